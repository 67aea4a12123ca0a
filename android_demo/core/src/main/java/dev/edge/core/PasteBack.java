package dev.edge.core;

/**
 * Blending the model's result into the input at the input's size, as edge/pipeline/loop.py does (to_image, resize,
 * paste_back): the decoded image in [0, 1] to 8 bits (rounded half to even), resized with LANCZOS to the input's size,
 * then result x w + input x (1 - w) in float64 and rounded half to even, where w = GaussianBlur(mask, 3) / 255.
 * Where w is 0 the input's pixels come back unchanged.
 */
public final class PasteBack {
    public static final float BLUR_RADIUS = 3f;

    private PasteBack() {
    }

    /** (1, 3, S, S) in [0, 1] -> an S x S picture. */
    public static Picture toPicture(float[] image01, int size) {
        int plane = size * size;
        Channel[] channels = new Channel[3];
        for (int c = 0; c < 3; c++) {
            int[] values = new int[plane];
            for (int i = 0; i < plane; i++) {
                float clamped = Math.min(Math.max(image01[c * plane + i], 0f), 1f);
                values[i] = (int) Math.rint(clamped * 255f);
            }
            channels[c] = new Channel(size, size, values);
        }
        return Picture.fromChannels(channels[0], channels[1], channels[2]);
    }

    /** How much of the model's result each input pixel takes (0 = the input's pixel, unchanged). */
    public static double[] weight(Channel binaryMask) {
        Channel blurred = GaussianBlur.blur(binaryMask, BLUR_RADIUS);
        double[] weight = new double[blurred.values.length];
        for (int i = 0; i < weight.length; i++) {
            weight[i] = blurred.values[i] / 255.0;
        }
        return weight;
    }

    /** result: the model's picture, any size (resized to the input's); original and binaryMask at the input's size. */
    public static Picture blend(Picture result, Picture original, Channel binaryMask) {
        Picture resized = result.resized(original.width, original.height);
        double[] weight = weight(binaryMask);
        Channel[] channels = new Channel[3];
        for (int c = 0; c < 3; c++) {
            Channel ours = resized.channel(c);
            Channel theirs = original.channel(c);
            int[] values = new int[weight.length];
            for (int i = 0; i < values.length; i++) {
                values[i] = (int) Math.rint(ours.values[i] * weight[i] + theirs.values[i] * (1 - weight[i]));
            }
            channels[c] = new Channel(original.width, original.height, values);
        }
        return Picture.fromChannels(channels[0], channels[1], channels[2]);
    }
}
