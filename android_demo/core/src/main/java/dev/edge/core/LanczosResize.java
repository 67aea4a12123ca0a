package dev.edge.core;

/**
 * Pillow's Image.resize(size, LANCZOS) of an 8-bit channel, reproduced value for value (the Python pipeline resizes
 * with it; an app must resize the same way for its pixels to match): a separable Lanczos-3 filter widened by the
 * downscale factor, weights normalised per output pixel and rounded to 22-bit fixed point, the horizontal pass first,
 * each pass rounded to 0..255.
 */
public final class LanczosResize {
    private static final int PRECISION_BITS = 32 - 8 - 2;
    private static final double SUPPORT = 3.0;

    private LanczosResize() {
    }

    public static Channel resize(Channel in, int width, int height) {
        Channel out = in;
        if (width != in.width) {
            out = pass(out, width, true);
        }
        if (height != in.height) {
            out = pass(out, height, false);
        }
        return out == in ? new Channel(in.width, in.height, in.values()) : out;
    }

    /** One direction: every line of `in` resized to `size` (horizontal: rows, else columns). */
    private static Channel pass(Channel in, int size, boolean horizontal) {
        int inSize = horizontal ? in.width : in.height;
        int lines = horizontal ? in.height : in.width;
        Taps taps = new Taps(inSize, size);
        int width = horizontal ? size : in.width;
        int height = horizontal ? in.height : size;
        int[] out = new int[width * height];
        for (int line = 0; line < lines; line++) {
            for (int o = 0; o < size; o++) {
                int sum = 1 << (PRECISION_BITS - 1);
                for (int k = 0; k < taps.count[o]; k++) {
                    int i = taps.first[o] + k;
                    sum += (horizontal ? in.get(i, line) : in.get(line, i)) * taps.weights[o][k];
                }
                int value = Math.max(0, Math.min(255, sum >> PRECISION_BITS));
                out[horizontal ? line * width + o : o * width + line] = value;
            }
        }
        return new Channel(width, height, out);
    }

    /** Per output position: the first input position it reads, how many, and their fixed-point weights. */
    private static final class Taps {
        final int[] first;
        final int[] count;
        final int[][] weights;

        Taps(int inSize, int outSize) {
            double scale = (double) inSize / outSize;
            double filterScale = Math.max(scale, 1.0);
            double support = SUPPORT * filterScale;
            double inverseScale = 1.0 / filterScale;
            first = new int[outSize];
            count = new int[outSize];
            weights = new int[outSize][];
            for (int o = 0; o < outSize; o++) {
                double center = (o + 0.5) * scale;
                int low = Math.max(0, (int) (center - support + 0.5));
                int high = Math.min(inSize, (int) (center + support + 0.5));
                double[] raw = new double[high - low];
                double total = 0;
                for (int k = 0; k < raw.length; k++) {
                    raw[k] = lanczos((k + low - center + 0.5) * inverseScale);
                    total += raw[k];
                }
                first[o] = low;
                count[o] = raw.length;
                weights[o] = new int[raw.length];
                for (int k = 0; k < raw.length; k++) {
                    double w = total != 0 ? raw[k] / total : raw[k];
                    weights[o][k] = (int) (w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
                }
            }
        }

        private static double lanczos(double x) {
            return -SUPPORT <= x && x < SUPPORT ? sinc(x) * sinc(x / SUPPORT) : 0.0;
        }

        private static double sinc(double x) {
            return x == 0.0 ? 1.0 : StrictMath.sin(x * Math.PI) / (x * Math.PI);
        }
    }
}
