package dev.edge.core;

/** One 8-bit channel of a picture, row-major: what Pillow's resize and blur work on, value by value. */
public final class Channel {
    public final int width;
    public final int height;
    /** 0..255, row-major. */
    final int[] values;

    public Channel(int width, int height, int[] values) {
        if (values.length != width * height) {
            throw new IllegalArgumentException(values.length + " values for " + width + "x" + height);
        }
        this.width = width;
        this.height = height;
        this.values = values;
    }

    public int get(int x, int y) {
        return values[y * width + x];
    }

    public int[] values() {
        return values.clone();
    }
}
