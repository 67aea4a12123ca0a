package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Test pictures: interleaved 8-bit channels to Picture, and comparisons with the numbers they found. */
final class Pictures {
    private Pictures() {
    }

    /** channels 3 (RGB) or 4 (RGBA) interleaved -> packed ARGB; 1 (grey) -> grey RGB. */
    static int[] argb(int[] interleaved, int width, int height, int channels) {
        int[] argb = new int[width * height];
        for (int i = 0; i < argb.length; i++) {
            int red = interleaved[i * channels];
            int green = channels >= 3 ? interleaved[i * channels + 1] : red;
            int blue = channels >= 3 ? interleaved[i * channels + 2] : red;
            int alpha = channels == 4 ? interleaved[i * channels + 3] : 255;
            argb[i] = alpha << 24 | red << 16 | green << 8 | blue;
        }
        return argb;
    }

    static Picture fromInterleaved(int[] interleaved, int width, int height, int channels) {
        return new Picture(width, height, argb(interleaved, width, height, channels));
    }

    /** The largest difference of any channel of any pixel, in 0..255 levels. */
    static int maxLevelDifference(Picture ours, Picture theirs) {
        assertEquals(theirs.width, ours.width, "width");
        assertEquals(theirs.height, ours.height, "height");
        int worst = 0;
        int[] a = ours.argb();
        int[] b = theirs.argb();
        for (int i = 0; i < a.length; i++) {
            for (int shift = 0; shift < 24; shift += 8) {
                worst = Math.max(worst, Math.abs((a[i] >> shift & 0xff) - (b[i] >> shift & 0xff)));
            }
        }
        return worst;
    }
}
