package dev.edge.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import org.json.JSONException;
import org.json.JSONObject;

/** The golden vectors tests/test_android_core.py writes with the Python pipeline (folder: -Dedge.goldens). */
final class Goldens {
    final File folder;
    final JSONObject index;

    private Goldens(File folder, JSONObject index) {
        this.folder = folder;
        this.index = index;
    }

    static Goldens load() throws Exception {
        String folder = System.getProperty("edge.goldens");
        if (folder == null) {
            throw new IllegalStateException("run through tests/test_android_core.py: -Dedge.goldens is not set");
        }
        File file = new File(folder, "goldens.json");
        return new Goldens(new File(folder), new JSONObject(Files.readString(file.toPath(), StandardCharsets.UTF_8)));
    }

    File bundleFolder() throws JSONException {
        return new File(index.getString("bundle"));
    }

    Bundle bundle() throws Exception {
        return Bundle.open(bundleFolder());
    }

    float[] floats(String file) throws Exception {
        ByteBuffer buffer = buffer(file);
        float[] values = new float[buffer.remaining() / 4];
        buffer.asFloatBuffer().get(values);
        return values;
    }

    double[] doubles(String file) throws Exception {
        ByteBuffer buffer = buffer(file);
        double[] values = new double[buffer.remaining() / 8];
        buffer.asDoubleBuffer().get(values);
        return values;
    }

    int[] bytes(String file) throws Exception {
        byte[] raw = Files.readAllBytes(new File(folder, file).toPath());
        int[] values = new int[raw.length];
        for (int i = 0; i < raw.length; i++) {
            values[i] = raw[i] & 0xff;
        }
        return values;
    }

    /** An 8-bit RGB picture saved row-major, channels interleaved. */
    Picture picture(String file, int width, int height) throws Exception {
        return Pictures.fromInterleaved(bytes(file), width, height, 3);
    }

    /** The held-out picture, as Python read it. */
    Picture image() throws Exception {
        return picture(index.getString("image"), index.getInt("width"), index.getInt("height"));
    }

    /** Its mask (an 8-bit grey picture) through the mask rule. */
    Channel binaryMask() throws Exception {
        int width = index.getInt("width");
        int height = index.getInt("height");
        return MaskRule.binarize(width, height, Pictures.argb(bytes(index.getString("mask")), width, height, 1), false);
    }

    private ByteBuffer buffer(String file) throws Exception {
        return ByteBuffer.wrap(Files.readAllBytes(new File(folder, file).toPath())).order(ByteOrder.LITTLE_ENDIAN);
    }
}
