package dev.edge.core;

/**
 * The DDIM (eta 0) schedule exactly as the manifest gives it: timesteps, alpha-bar at each and at the step it moves
 * to. Arithmetic in float32, operation by operation as edge/pipeline/schedule.py does it, so results match bit for bit.
 */
public final class Schedule {
    private final int[] timesteps;
    private final float[] alphas;
    private final float[] alphasNext;

    public Schedule(int[] timesteps, float[] alphas, float[] alphasNext) {
        this.timesteps = timesteps.clone();
        this.alphas = alphas.clone();
        this.alphasNext = alphasNext.clone();
    }

    public int steps() {
        return timesteps.length;
    }

    public int timestep(int index) {
        return timesteps[index];
    }

    public float alpha(int index) {
        return alphas[index];
    }

    public float alphaNext(int index) {
        return alphasNext[index];
    }

    /** The clean latent noised to the first timestep: sqrt(a) x + sqrt(1 - a) noise. */
    public float[] addNoise(float[] latents, float[] noise) {
        float keep = sqrt(alphas[0]);
        float add = sqrt(1f - alphas[0]);
        float[] noisy = new float[latents.length];
        for (int j = 0; j < latents.length; j++) {
            noisy[j] = keep * latents[j] + add * noise[j];
        }
        return noisy;
    }

    /** One deterministic DDIM step from timestep(index) to the next, given the (guided) predicted noise. */
    public float[] step(int index, float[] sample, float[] noise) {
        float alphaRoot = sqrt(alphas[index]);
        float noiseScale = sqrt(1f - alphas[index]);
        float nextRoot = sqrt(alphasNext[index]);
        float nextNoiseScale = sqrt(1f - alphasNext[index]);
        float[] next = new float[sample.length];
        for (int j = 0; j < sample.length; j++) {
            float clean = (sample[j] - noiseScale * noise[j]) / alphaRoot;
            next[j] = nextRoot * clean + nextNoiseScale * noise[j];
        }
        return next;
    }

    /** float32 square root, correctly rounded (as torch's). */
    private static float sqrt(float value) {
        return (float) Math.sqrt(value);
    }
}
