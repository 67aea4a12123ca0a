package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Float comparisons for the goldens. "Within float32 rounding" is a few units in the last place of the tensor's
 * scale (its largest magnitude): torch and Java round the same operations, but the DDIM step divides a difference by
 * sqrt(alpha) (0.22 at t = 900), so one ulp of a step's terms can show as several ulps of a small result.
 */
final class Floats {
    static final int ULPS = 8;

    private Floats() {
    }

    static double maxAbs(float[] ours, float[] theirs) {
        assertEquals(theirs.length, ours.length, "length");
        double worst = 0;
        for (int i = 0; i < ours.length; i++) {
            worst = Math.max(worst, Math.abs((double) ours[i] - theirs[i]));
        }
        return worst;
    }

    /** Every value within ULPS float32 ulps of the tensor's largest magnitude; returns the max abs difference. */
    static double assertWithinRounding(float[] ours, float[] theirs, String what) {
        double worst = maxAbs(ours, theirs);
        float scale = 0;
        for (float value : theirs) {
            scale = Math.max(scale, Math.abs(value));
        }
        double allowed = ULPS * (double) Math.ulp(scale);
        for (int i = 0; i < ours.length; i++) {
            double difference = Math.abs((double) ours[i] - theirs[i]);
            int index = i;
            assertTrue(difference <= allowed, () -> what + "[" + index + "]: " + ours[index] + " vs Python's "
                    + theirs[index] + " (max abs over all " + worst + ", allowed " + allowed + ")");
        }
        return worst;
    }
}
