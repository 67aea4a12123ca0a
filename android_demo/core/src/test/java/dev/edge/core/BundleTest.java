package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Bundle.open on the tiny bundle edge compiled, and on damaged copies: one clear line per problem. */
class BundleTest {
    @TempDir
    File scratch;

    @Test
    void goodBundleOpensWithTheManifestsNumbers() throws Exception {
        Goldens goldens = Goldens.load();
        Bundle bundle = goldens.bundle();
        JSONObject raw = new JSONObject(Files.readString(new File(goldens.bundleFolder(), "manifest.json").toPath()));
        Manifest manifest = bundle.manifest;
        assertEquals(raw.getInt("image_size"), manifest.imageSize);
        assertEquals(raw.getString("backend"), manifest.backend);
        JSONObject sampling = raw.getJSONObject("sampling");
        assertEquals((float) sampling.getDouble("guidance"), manifest.guidance);
        JSONArray alphas = sampling.getJSONObject("scheduler").getJSONArray("alphas_cumprod");
        for (int i = 0; i < alphas.length(); i++) {
            assertEquals((float) alphas.getDouble(i), manifest.schedule.alpha(i));
        }
        assertEquals(raw.getJSONObject("end_to_end_tolerance").getDouble("max_abs_image01"), manifest.tolerance);
        assertEquals(new File(goldens.bundleFolder(), "unet.pte"), bundle.programFile("unet"));
        assertArrayEquals(new int[] {2, 9, manifest.latentSize, manifest.latentSize}, manifest.graph("unet").inputs.get(0).shape());
    }

    @Test
    void missingFile() throws Exception {
        File bundle = damaged();
        Files.delete(new File(bundle, "unet.pte").toPath());
        assertRefused(bundle, bundle + ": unet.pte is missing");
    }

    @Test
    void wrongSha256() throws Exception {
        File bundle = damaged();
        try (RandomAccessFile program = new RandomAccessFile(new File(bundle, "decoder.pte"), "rw")) {
            program.seek(program.length() / 2);
            int value = program.read();
            program.seek(program.length() / 2);
            program.write(value ^ 0x01);
        }
        assertRefused(bundle, bundle + ": decoder.pte does not match its sha256 in the manifest");
    }

    @Test
    void editedManifestWithoutItsDigest() throws Exception {
        File bundle = damaged();
        File manifest = new File(bundle, "manifest.json");
        Files.writeString(manifest.toPath(), Files.readString(manifest.toPath()).replace("\"guidance\": 2.0", "\"guidance\": 9.0"));
        assertRefused(bundle, manifest + ": does not match manifest.sha256 (damaged or edited; push the bundle again)");
    }

    @Test
    void wrongSchema() throws Exception {
        File bundle = damaged();
        DamagedBundles.editManifest(bundle, json -> json.put("schema", 2));
        assertRefused(bundle, new File(bundle, "manifest.json") + ": schema 2, this app reads schema 1");
    }

    @Test
    void wrongShape() throws Exception {
        File bundle = damaged();
        DamagedBundles.editManifest(bundle, json -> unetLatent(json).put("shape", new JSONArray(new int[] {2, 9, 16, 8})));
        assertRefused(bundle, new File(bundle, "manifest.json") + ": manifest 'graphs.unet.inputs' are "
                + "[latent [2, 9, 16, 8], time_features [1, 32]], this loop needs [latent [2, 9, 16, 16], time_features [1, 32]]");
    }

    @Test
    void wrongName() throws Exception {
        File bundle = damaged();
        DamagedBundles.editManifest(bundle, json -> unetLatent(json).put("name", "sample"));
        assertRefused(bundle, new File(bundle, "manifest.json") + ": manifest 'graphs.unet.inputs' are "
                + "[sample [2, 9, 16, 16], time_features [1, 32]], this loop needs [latent [2, 9, 16, 16], time_features [1, 32]]");
    }

    @Test
    void missingKey() throws Exception {
        File bundle = damaged();
        DamagedBundles.editManifest(bundle, json -> json.getJSONObject("sampling").remove("guidance"));
        assertRefused(bundle, new File(bundle, "manifest.json") + ": manifest lacks 'sampling.guidance'");
    }

    @Test
    void guidanceOutOfRange() throws Exception {
        File bundle = damaged();
        DamagedBundles.editManifest(bundle, json -> json.getJSONObject("sampling").put("guidance", -1));
        assertRefused(bundle, new File(bundle, "manifest.json") + ": manifest 'sampling.guidance' must be in 0..30.0");
    }

    @Test
    void pathOutOfTheBundle() throws Exception {
        File bundle = damaged();
        DamagedBundles.editManifest(bundle, json -> json.getJSONObject("graphs").getJSONObject("encoder").put("file", "../encoder.pte"));
        assertRefused(bundle, new File(bundle, "manifest.json")
                + ": manifest 'graphs.encoder.file' = '../encoder.pte' is not a relative path inside the bundle");
    }

    @Test
    void truncatedTimeFeaturesRehashed() throws Exception {
        File bundle = damaged();
        File features = new File(bundle, "time_features.f32");
        byte[] bytes = Files.readAllBytes(features.toPath());
        byte[] shorter = java.util.Arrays.copyOf(bytes, bytes.length - 4);
        Files.write(features.toPath(), shorter);
        DamagedBundles.editManifest(bundle, json -> json.getJSONObject("files").put("time_features.f32", DamagedBundles.sha256(shorter)));
        assertRefused(bundle, features + ": " + (bytes.length / 4 - 1) + " values, the manifest says [19, 32]");
    }

    private File damaged() throws Exception {
        return DamagedBundles.copy(Goldens.load().bundleFolder(), scratch);
    }

    private static JSONObject unetLatent(JSONObject manifest) throws JSONException {
        return manifest.getJSONObject("graphs").getJSONObject("unet").getJSONArray("inputs").getJSONObject(0);
    }

    private static void assertRefused(File bundle, String message) {
        BundleException refused = assertThrows(BundleException.class, () -> Bundle.open(bundle));
        assertEquals(message, refused.getMessage());
        assertFalse(refused.getMessage().contains("\n"), "one line");
        assertTrue(bundle.isDirectory(), "the bundle is left in place");
    }
}
