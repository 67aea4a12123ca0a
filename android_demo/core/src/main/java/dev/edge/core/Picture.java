package dev.edge.core;

/** An RGB picture as Android's Bitmap.getPixels gives it: packed 0xAARRGGBB ints, row-major (alpha ignored). */
public final class Picture {
    public final int width;
    public final int height;
    private final int[] argb;

    public Picture(int width, int height, int[] argb) {
        if (argb.length != width * height) {
            throw new IllegalArgumentException(argb.length + " pixels for " + width + "x" + height);
        }
        this.width = width;
        this.height = height;
        this.argb = argb.clone();
    }

    /** Opaque pixels, for Bitmap.setPixels. */
    public int[] argb() {
        return argb.clone();
    }

    /** Channel 0 (red), 1 (green) or 2 (blue). */
    public Channel channel(int index) {
        int shift = 16 - 8 * index;
        int[] values = new int[argb.length];
        for (int i = 0; i < values.length; i++) {
            values[i] = argb[i] >> shift & 0xff;
        }
        return new Channel(width, height, values);
    }

    public static Picture fromChannels(Channel red, Channel green, Channel blue) {
        int[] argb = new int[red.width * red.height];
        for (int i = 0; i < argb.length; i++) {
            argb[i] = 0xff000000 | red.values[i] << 16 | green.values[i] << 8 | blue.values[i];
        }
        return new Picture(red.width, red.height, argb);
    }

    /** Every channel resized as Pillow's LANCZOS does it. */
    public Picture resized(int newWidth, int newHeight) {
        return fromChannels(LanczosResize.resize(channel(0), newWidth, newHeight),
                LanczosResize.resize(channel(1), newWidth, newHeight),
                LanczosResize.resize(channel(2), newWidth, newHeight));
    }
}
