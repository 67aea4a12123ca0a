package dev.edge.core;

import java.util.Random;

/**
 * The sampler's start noise, (1, 4, s, s): standard normal values plus noise_offset x a standard normal value per
 * channel (the published inference's offset). Seeded with java.util.Random, whose sequence the Java specification
 * fixes, so a seed gives the same picture on every JVM and phone; it is not torch's generator, so for a picture
 * identical to `edge inpaint --seed N` feed Python's noise to Sampler instead.
 */
public final class StartNoise {
    public static final int CHANNELS = 4;

    private StartNoise() {
    }

    public static float[] seeded(long seed, int latentSize, float noiseOffset) {
        Random random = new Random(seed);
        int plane = latentSize * latentSize;
        float[] noise = new float[CHANNELS * plane];
        for (int j = 0; j < noise.length; j++) {
            noise[j] = (float) random.nextGaussian();
        }
        if (noiseOffset != 0f) {
            for (int c = 0; c < CHANNELS; c++) {
                float offset = noiseOffset * (float) random.nextGaussian();
                for (int j = 0; j < plane; j++) {
                    noise[c * plane + j] += offset;
                }
            }
        }
        return noise;
    }
}
