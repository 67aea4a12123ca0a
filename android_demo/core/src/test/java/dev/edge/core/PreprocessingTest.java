package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import org.json.JSONObject;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestReporter;

/** The mask rule, Pillow's LANCZOS resize and the model's inputs against what the Python pipeline computed. */
class PreprocessingTest {
    private static Goldens goldens;
    private static Recorded recorded;

    @BeforeAll
    static void load() throws Exception {
        goldens = Goldens.load();
        recorded = Recorded.load(goldens);
    }

    @Test
    void maskRuleMatchesPillowOnGreyColouredAndStrokeMasks() throws Exception {
        JSONObject cases = goldens.index.getJSONObject("mask_rule");
        for (String name : new String[] {"rgb", "rgba_coloured", "rgba_flat"}) {
            JSONObject mask = cases.getJSONObject(name);
            int width = mask.getInt("width");
            int height = mask.getInt("height");
            int channels = mask.getInt("channels");
            int[] argb = Pictures.argb(goldens.bytes(mask.getString("input")), width, height, channels);
            Channel ours = MaskRule.binarize(width, height, argb, channels == 4);
            assertArrayEquals(goldens.bytes(mask.getString("binary")), ours.values(), name);
        }
    }

    @Test
    void heldOutMaskBinarisesAsPython() throws Exception {
        assertArrayEquals(goldens.bytes(goldens.index.getString("binary_mask")), goldens.binaryMask().values());
    }

    @Test
    void lanczosResizeMatchesPillowDownAndUp() throws Exception {
        JSONObject resize = goldens.index.getJSONObject("resize");
        Picture odd = goldens.picture(resize.getString("input"), resize.getInt("width"), resize.getInt("height"));
        assertEquals(0, Pictures.maxLevelDifference(odd.resized(128, 128), goldens.picture(resize.getString("down"), 128, 128)));
        assertEquals(0, Pictures.maxLevelDifference(odd.resized(300, 211), goldens.picture(resize.getString("up"), 300, 211)));
    }

    @Test
    void modelInputsMatchWhatPythonFedTheEncoderAndUnet(TestReporter reporter) throws Exception {
        Manifest manifest = goldens.bundle().manifest;
        ModelInputs inputs = ModelInputs.prepare(goldens.image(), goldens.binaryMask(), manifest.imageSize, manifest.latentSize);
        reporter.publishEntry("max_abs_model_image", String.valueOf(
                Floats.assertWithinRounding(inputs.image, recorded.input(0, 0), "image")));
        reporter.publishEntry("max_abs_masked_image", String.valueOf(
                Floats.assertWithinRounding(inputs.maskedImage, recorded.input(1, 0), "masked image")));
        int plane = manifest.latentSize * manifest.latentSize;
        float[] unetInput = recorded.input(2, 0);
        float[] maskLatent = new float[plane];
        System.arraycopy(unetInput, 4 * plane, maskLatent, 0, plane);
        assertArrayEquals(maskLatent, inputs.maskLatent);
    }
}
