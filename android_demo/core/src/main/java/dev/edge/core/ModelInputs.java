package dev.edge.core;

/**
 * The picture and mask at the model's size, as edge/pipeline/loop.py prepares them (model_inputs, then the start of
 * inpaint_tensors): both resized with Pillow's LANCZOS to S x S, the image scaled to [-1, 1], the resized mask
 * binarised again at 0.5, the masked image image x (1 - mask), and the mask at latent size (nearest: every 8th pixel).
 * Arrays are float32, planar (channel, row, column), batch 1.
 */
public final class ModelInputs {
    public final int imageSize;
    public final int latentSize;
    /** (1, 3, S, S) in [-1, 1]. */
    public final float[] image;
    /** (1, 1, S, S), 1 = fill. */
    public final float[] mask;
    /** (1, 3, S, S): image x (1 - mask). */
    public final float[] maskedImage;
    /** (1, 1, s, s), 1 = fill. */
    public final float[] maskLatent;

    private ModelInputs(int imageSize, int latentSize, float[] image, float[] mask, float[] maskedImage, float[] maskLatent) {
        this.imageSize = imageSize;
        this.latentSize = latentSize;
        this.image = image;
        this.mask = mask;
        this.maskedImage = maskedImage;
        this.maskLatent = maskLatent;
    }

    /** image: the input picture; binaryMask: MaskRule's 0/255 channel of the same size. */
    public static ModelInputs prepare(Picture image, Channel binaryMask, int imageSize, int latentSize) {
        int plane = imageSize * imageSize;
        Picture square = image.resized(imageSize, imageSize);
        Channel squareMask = LanczosResize.resize(binaryMask, imageSize, imageSize);
        float[] pixels = new float[3 * plane];
        float[] mask = new float[plane];
        float[] masked = new float[3 * plane];
        for (int i = 0; i < plane; i++) {
            mask[i] = squareMask.values[i] / 255f >= 0.5f ? 1f : 0f;
        }
        for (int c = 0; c < 3; c++) {
            Channel channel = square.channel(c);
            for (int i = 0; i < plane; i++) {
                float value = channel.values[i] / 255f * 2f - 1f;
                pixels[c * plane + i] = value;
                masked[c * plane + i] = value * (1f - mask[i]);
            }
        }
        float[] maskLatent = new float[latentSize * latentSize];
        for (int y = 0; y < latentSize; y++) {
            for (int x = 0; x < latentSize; x++) {
                maskLatent[y * latentSize + x] = mask[nearest(y, imageSize, latentSize) * imageSize + nearest(x, imageSize, latentSize)];
            }
        }
        return new ModelInputs(imageSize, latentSize, pixels, mask, masked, maskLatent);
    }

    /** torch's nearest interpolation: the source index floor(i x in / out), in float32. */
    private static int nearest(int index, int inSize, int outSize) {
        float scale = (float) inSize / outSize;
        return Math.min((int) Math.floor(index * scale), inSize - 1);
    }
}
