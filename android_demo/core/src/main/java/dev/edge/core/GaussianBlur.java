package dev.edge.core;

/**
 * Pillow's ImageFilter.GaussianBlur(radius) of an 8-bit channel, reproduced value for value (the Python pipeline
 * blurs the paste-back mask with it): three box blurs per direction whose width (a fractional box, Gwosdek et al.
 * 2011's extended box filter) gives the Gaussian's variance, edges extended, every pass rounded to 0..255; all
 * horizontal passes first, then all vertical ones.
 */
public final class GaussianBlur {
    private static final int PASSES = 3;

    private GaussianBlur() {
    }

    public static Channel blur(Channel in, float radius) {
        float boxRadius = boxRadius(radius);
        int[] values = in.values();
        for (int pass = 0; pass < PASSES; pass++) {
            values = boxPass(values, in.width, in.height, boxRadius, true);
        }
        for (int pass = 0; pass < PASSES; pass++) {
            values = boxPass(values, in.width, in.height, boxRadius, false);
        }
        return new Channel(in.width, in.height, values);
    }

    /** The extended box's radius (integer part: whole taps, fraction: the weight of one more tap each side). */
    static float boxRadius(float radius) {
        float sigma2 = radius * radius / PASSES;
        float length = (float) Math.sqrt(12.0 * sigma2 + 1.0);
        float whole = (float) Math.floor((length - 1.0) / 2.0);
        float fraction = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2);
        fraction /= 6 * (sigma2 - (whole + 1) * (whole + 1));
        return whole + fraction;
    }

    /** One box pass along rows (horizontal) or columns, in 8.24 fixed point as Pillow computes it. */
    private static int[] boxPass(int[] in, int width, int height, float boxRadius, boolean horizontal) {
        int taps = (int) boxRadius;
        long inner = (long) ((float) (1 << 24) / (boxRadius * 2 + 1));
        long outer = ((1L << 24) - (taps * 2L + 1) * inner) / 2;
        int length = horizontal ? width : height;
        int lines = horizontal ? height : width;
        int[] out = new int[in.length];
        for (int line = 0; line < lines; line++) {
            int start = horizontal ? line * width : line;
            int stride = horizontal ? 1 : width;
            for (int x = 0; x < length; x++) {
                long window = 0;
                for (int k = -taps; k <= taps; k++) {
                    window += in[start + stride * clamp(x + k, length)];
                }
                long far = in[start + stride * clamp(x - taps - 1, length)] + in[start + stride * clamp(x + taps + 1, length)];
                out[start + stride * x] = (int) ((window * inner + far * outer + (1 << 23)) >> 24);
            }
        }
        return out;
    }

    private static int clamp(int index, int length) {
        return Math.max(0, Math.min(length - 1, index));
    }
}
