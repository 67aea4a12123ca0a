package dev.edge.core;

/**
 * A picture of any size inpainted with a bundle, edge/pipeline/loop.py's inpaint_image: picture and mask resized to
 * the model's square size (not letterboxed), sampled, the result resized back and pasted with the blurred mask, so the
 * pixels outside it are the input's, unchanged.
 */
public final class Inpainter {
    private final Bundle bundle;
    private final Sampler sampler;

    public Inpainter(Bundle bundle, InpaintGraphs graphs) {
        this.bundle = bundle;
        this.sampler = new Sampler(bundle, graphs);
    }

    /** With java.util.Random's start noise for the seed (StartNoise). */
    public Picture inpaint(Picture image, Channel binaryMask, long seed, SamplingListener listener) throws GraphException {
        Manifest manifest = bundle.manifest;
        return inpaint(image, binaryMask, StartNoise.seeded(seed, manifest.latentSize, manifest.noiseOffset), listener);
    }

    /** binaryMask: MaskRule's 0/255 channel, the picture's size, something to fill; noise: (1, 4, s, s). */
    public Picture inpaint(Picture image, Channel binaryMask, float[] noise, SamplingListener listener) throws GraphException {
        if (binaryMask.width != image.width || binaryMask.height != image.height) {
            throw new IllegalArgumentException("mask is " + binaryMask.width + "x" + binaryMask.height
                    + " but the image is " + image.width + "x" + image.height);
        }
        if (MaskRule.isEmpty(binaryMask)) {
            throw new IllegalArgumentException("mask is empty: nothing to fill (white = fill, black = keep)");
        }
        Manifest manifest = bundle.manifest;
        ModelInputs inputs = ModelInputs.prepare(image, binaryMask, manifest.imageSize, manifest.latentSize);
        Sampler.Result result = sampler.sample(inputs, noise, listener);
        return PasteBack.blend(PasteBack.toPicture(result.image01, manifest.imageSize), image, binaryMask);
    }
}
