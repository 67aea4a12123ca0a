package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import org.junit.jupiter.api.Test;

/** The blurred paste-back at the input's size against edge/pipeline/loop.py's, pixel for pixel. */
class PasteBackTest {
    @Test
    void pasteWeightIsPillowsGaussianBlurOfTheMask() throws Exception {
        Goldens goldens = Goldens.load();
        assertArrayEquals(goldens.doubles(goldens.index.getString("paste_weight")),
                PasteBack.weight(goldens.binaryMask()));
    }

    @Test
    void decodedImagePastedBackIsPythonsPicture() throws Exception {
        Goldens goldens = Goldens.load();
        int size = goldens.bundle().manifest.imageSize;
        float[] image01 = Recorded.load(goldens).of("decoder").get(0).output;
        Picture ours = PasteBack.blend(PasteBack.toPicture(image01, size), goldens.image(),
                goldens.binaryMask());
        Picture python = goldens.picture(goldens.index.getString("output"), ours.width, ours.height);
        assertEquals(0, Pictures.maxLevelDifference(ours, python));
    }

    @Test
    void pixelsOutsideTheBlurredMaskAreTheInputs() throws Exception {
        Goldens goldens = Goldens.load();
        Picture input = goldens.image();
        Channel mask = goldens.binaryMask();
        float[] white = new float[3 * 128 * 128];
        java.util.Arrays.fill(white, 1f);
        int[] blended = PasteBack.blend(PasteBack.toPicture(white, 128), input, mask).argb();
        double[] weight = PasteBack.weight(mask);
        int[] original = input.argb();
        int kept = 0;
        for (int i = 0; i < weight.length; i++) {
            if (weight[i] == 0) {
                assertEquals(original[i], blended[i], "pixel " + i);
                kept++;
            } else if (weight[i] == 1) {
                assertEquals(0xffffffff, blended[i], "pixel " + i);
            }
        }
        assertEquals(true, kept > 0 && kept < weight.length, "the mask keeps some pixels and fills others");
    }
}
