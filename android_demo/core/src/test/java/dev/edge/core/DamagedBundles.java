package dev.edge.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.stream.Stream;
import org.json.JSONException;
import org.json.JSONObject;

/** Copies of a good bundle, damaged the ways a download or a hand edit damages one. */
final class DamagedBundles {
    interface ManifestEdit {
        void apply(JSONObject manifest) throws JSONException;
    }

    private DamagedBundles() {
    }

    static File copy(File bundle, File into) throws Exception {
        File copy = new File(into, bundle.getName());
        Files.createDirectories(copy.toPath());
        try (Stream<Path> files = Files.list(bundle.toPath())) {
            for (Path file : (Iterable<Path>) files::iterator) {
                Files.copy(file, copy.toPath().resolve(file.getFileName()));
            }
        }
        return copy;
    }

    /** Edit manifest.json and write the matching manifest.sha256: what reaches the checks behind the digest. */
    static void editManifest(File bundle, ManifestEdit edit) throws IOException, JSONException {
        Path manifest = new File(bundle, Bundle.MANIFEST).toPath();
        JSONObject json = new JSONObject(Files.readString(manifest, StandardCharsets.UTF_8));
        edit.apply(json);
        byte[] payload = (json.toString() + "\n").getBytes(StandardCharsets.UTF_8);
        Files.write(manifest, payload);
        Files.writeString(new File(bundle, Bundle.MANIFEST_DIGEST).toPath(), sha256(payload) + "  manifest.json\n");
    }

    static String sha256(byte[] bytes) {
        try {
            StringBuilder hex = new StringBuilder();
            for (byte b : MessageDigest.getInstance("SHA-256").digest(bytes)) {
                hex.append(String.format("%02x", b));
            }
            return hex.toString();
        } catch (NoSuchAlgorithmException err) {
            throw new IllegalStateException(err);
        }
    }
}
