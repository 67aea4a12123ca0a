package dev.edge.core;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Map;

/**
 * A bundle folder an app was handed, opened through the checks of edge/bundle/bundle.py (open_bundle), in order and
 * before any program is loaded: manifest.json matches manifest.sha256; the manifest against its schema; every listed
 * file resolves inside the folder and is a regular file; every listed file's sha256; the time-feature table reads back
 * with the manifest's shape and finite values. The first problem is one BundleException naming the file.
 */
public final class Bundle {
    public static final String MANIFEST = "manifest.json";
    public static final String MANIFEST_DIGEST = "manifest.sha256";

    public final File folder;
    public final Manifest manifest;
    private final float[][] timeFeatures;

    private Bundle(File folder, Manifest manifest, float[][] timeFeatures) {
        this.folder = folder;
        this.manifest = manifest;
        this.timeFeatures = timeFeatures;
    }

    public static Bundle open(File folder) throws BundleException {
        if (!folder.isDirectory()) {
            throw new BundleException(folder + ": not a bundle folder");
        }
        Manifest manifest = readManifest(folder);
        for (String name : manifest.files.keySet()) {
            checkContained(folder, name);
        }
        for (Map.Entry<String, String> listed : manifest.files.entrySet()) {
            File file = new File(folder, listed.getKey());
            if (!file.isFile()) {
                throw new BundleException(folder + ": " + listed.getKey() + " is missing");
            }
            if (!sha256(file).equals(listed.getValue())) {
                throw new BundleException(folder + ": " + listed.getKey() + " does not match its sha256 in the manifest");
            }
        }
        return new Bundle(folder, manifest, readTimeFeatures(new File(folder, manifest.timeFeaturesFile), manifest));
    }

    /** The program file of one of the three graphs. */
    public File programFile(String graph) {
        return new File(folder, manifest.graph(graph).file);
    }

    /** Row `step` of the table: the unet's time_features input at that sampling step. */
    public float[] timeFeatures(int step) {
        return timeFeatures[step].clone();
    }

    private static Manifest readManifest(File folder) throws BundleException {
        File manifestFile = new File(folder, MANIFEST);
        File digestFile = new File(folder, MANIFEST_DIGEST);
        for (File file : new File[] {manifestFile, digestFile}) {
            if (Files.isSymbolicLink(file.toPath()) || file.exists() && !file.isFile()) {
                throw new BundleException(file + ": must be a regular file inside the bundle");
            }
        }
        if (!manifestFile.isFile()) {
            throw new BundleException(folder + ": not a bundle (no " + MANIFEST + ")");
        }
        if (!digestFile.isFile()) {
            throw new BundleException(folder + ": no " + MANIFEST_DIGEST);
        }
        byte[] manifestBytes = read(manifestFile);
        String digest = new String(read(digestFile), StandardCharsets.US_ASCII).split(" ", 2)[0].trim();
        if (!hex(sha256(manifestBytes)).equals(digest)) {
            throw new BundleException(manifestFile + ": does not match " + MANIFEST_DIGEST
                    + " (damaged or edited; push the bundle again)");
        }
        return Manifest.parse(new String(manifestBytes, StandardCharsets.UTF_8), manifestFile.toString());
    }

    private static void checkContained(File folder, String name) throws BundleException {
        Path root;
        Path file;
        try {
            root = folder.toPath().toRealPath();
            file = new File(folder, name).toPath();
            if (Files.exists(file, LinkOption.NOFOLLOW_LINKS) && !file.toRealPath().startsWith(root)) {
                throw new BundleException(folder + ": " + name + " resolves outside the bundle (a symlink out of it)");
            }
        } catch (IOException err) {
            throw new BundleException(folder + ": " + name + " cannot be resolved (" + err.getMessage() + ")", err);
        }
        if (Files.exists(file) && !Files.isRegularFile(file)) {
            throw new BundleException(folder + ": " + name + " is not a regular file");
        }
    }

    private static float[][] readTimeFeatures(File file, Manifest manifest) throws BundleException {
        int steps = manifest.schedule.steps();
        int width = manifest.timeFeatureSize;
        byte[] bytes = read(file);
        if (bytes.length != 4L * steps * width) {
            throw new BundleException(file + ": " + bytes.length / 4 + " values, the manifest says [" + steps + ", "
                    + width + "]");
        }
        ByteBuffer buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        float[][] table = new float[steps][width];
        for (float[] row : table) {
            for (int k = 0; k < width; k++) {
                row[k] = buffer.getFloat();
                if (!Float.isFinite(row[k])) {
                    throw new BundleException(file + ": holds non-finite values");
                }
            }
        }
        return table;
    }

    private static byte[] read(File file) throws BundleException {
        try {
            return Files.readAllBytes(file.toPath());
        } catch (IOException err) {
            throw new BundleException(file + ": cannot be read (" + err.getMessage() + ")", err);
        }
    }

    private static String sha256(File file) throws BundleException {
        MessageDigest digest = sha256();
        byte[] chunk = new byte[1 << 20];
        try (InputStream in = Files.newInputStream(file.toPath())) {
            for (int count = in.read(chunk); count > 0; count = in.read(chunk)) {
                digest.update(chunk, 0, count);
            }
        } catch (IOException err) {
            throw new BundleException(file + ": cannot be read (" + err.getMessage() + ")", err);
        }
        return hex(digest.digest());
    }

    private static byte[] sha256(byte[] bytes) {
        return sha256().digest(bytes);
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException err) {
            throw new IllegalStateException("every Java platform has SHA-256", err);
        }
    }

    private static String hex(byte[] bytes) {
        StringBuilder text = new StringBuilder();
        for (byte b : bytes) {
            text.append(String.format("%02x", b));
        }
        return text.toString();
    }
}
