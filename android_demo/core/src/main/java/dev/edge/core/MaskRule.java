package dev.edge.core;

/**
 * The mask rule of edge/pipeline/pictures.py (binary_mask): white (luminance >= 128) = fill, black = keep; a mask with
 * an alpha channel whose colour is flat (one colour everywhere: a stroke painted on a transparent layer) is read from
 * its alpha instead, opaque (alpha >= 128) = fill. The result is a 0/255 channel (255 = fill).
 */
public final class MaskRule {
    private MaskRule() {
    }

    /** argb as Bitmap.getPixels gives it; hasAlpha as Bitmap.hasAlpha says (whether the picture has an alpha channel). */
    public static Channel binarize(int width, int height, int[] argb, boolean hasAlpha) {
        boolean fromAlpha = hasAlpha && flatColour(argb);
        int[] fill = new int[argb.length];
        for (int i = 0; i < argb.length; i++) {
            int level = fromAlpha ? argb[i] >>> 24 : luminance(argb[i]);
            fill[i] = level >= 128 ? 255 : 0;
        }
        return new Channel(width, height, fill);
    }

    /** Pillow's RGB -> L: ITU-R 601-2 luma in 16-bit fixed point, rounded. */
    static int luminance(int argb) {
        int red = argb >> 16 & 0xff;
        int green = argb >> 8 & 0xff;
        int blue = argb & 0xff;
        return (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >> 16;
    }

    private static boolean flatColour(int[] argb) {
        for (int pixel : argb) {
            if ((pixel & 0xffffff) != (argb[0] & 0xffffff)) {
                return false;
            }
        }
        return true;
    }

    /** True when nothing is to be filled (edge refuses such a mask: nothing to inpaint). */
    public static boolean isEmpty(Channel mask) {
        for (int value : mask.values) {
            if (value != 0) {
                return false;
            }
        }
        return true;
    }
}
