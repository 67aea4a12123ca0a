package dev.edge.core;

import java.util.concurrent.CancellationException;

/**
 * The sampling loop at model size, edge/pipeline/loop.py's inpaint_tensors: encode the image and the masked image,
 * noise the clean latent to the first timestep, then per step run the UNet on the batch [uncond, cond] of
 * [noisy latent, mask, masked-image latent], combine uncond + guidance x (cond - uncond) and take the DDIM step;
 * decode. The schedule, guidance and time features are the bundle's.
 */
public final class Sampler {
    private final Bundle bundle;
    private final InpaintGraphs graphs;

    public Sampler(Bundle bundle, InpaintGraphs graphs) {
        this.bundle = bundle;
        this.graphs = graphs;
    }

    /** The final latent and the decoded image. */
    public static final class Result {
        /** (1, 4, s, s). */
        public final float[] latents;
        /** (1, 3, S, S) in [0, 1], before paste-back. */
        public final float[] image01;

        Result(float[] latents, float[] image01) {
            this.latents = latents;
            this.image01 = image01;
        }
    }

    /** noise: (1, 4, s, s) start noise (StartNoise.seeded, or Python's for parity). */
    public Result sample(ModelInputs inputs, float[] noise, SamplingListener listener) throws GraphException {
        Manifest manifest = bundle.manifest;
        Schedule schedule = manifest.schedule;
        checkCancelled(listener);
        float[] latents = graphs.encode(inputs.image);
        checkCancelled(listener);
        float[] maskedLatents = graphs.encode(inputs.maskedImage);
        float[] x = schedule.addNoise(latents, noise);
        for (int i = 0; i < schedule.steps(); i++) {
            checkCancelled(listener);
            float[] predicted = graphs.denoise(unetBatch(x, inputs.maskLatent, maskedLatents), bundle.timeFeatures(i));
            x = schedule.step(i, x, guided(predicted, manifest.guidance));
            listener.onStep(i + 1, schedule.steps());
        }
        checkCancelled(listener);
        return new Result(x, graphs.decode(x));
    }

    /** (2, 9, s, s): [x, mask, masked-image latent] twice (uncond, cond: the conditioning is inside the graph). */
    static float[] unetBatch(float[] x, float[] maskLatent, float[] maskedLatents) {
        int sample = x.length + maskLatent.length + maskedLatents.length;
        float[] batch = new float[2 * sample];
        for (int b = 0; b < 2; b++) {
            System.arraycopy(x, 0, batch, b * sample, x.length);
            System.arraycopy(maskLatent, 0, batch, b * sample + x.length, maskLatent.length);
            System.arraycopy(maskedLatents, 0, batch, b * sample + x.length + maskLatent.length, maskedLatents.length);
        }
        return batch;
    }

    /** Classifier-free guidance over the UNet's (2, 4, s, s) output: uncond + guidance x (cond - uncond). */
    public static float[] guided(float[] predicted, float guidance) {
        int half = predicted.length / 2;
        float[] combined = new float[half];
        for (int j = 0; j < half; j++) {
            float uncond = predicted[j];
            combined[j] = uncond + guidance * (predicted[half + j] - uncond);
        }
        return combined;
    }

    private static void checkCancelled(SamplingListener listener) {
        if (listener.isCancelled()) {
            throw new CancellationException("inpainting cancelled");
        }
    }
}
