package dev.edge.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * manifest.json (schema 1), read and checked by the rules of edge/bundle/manifest.py: the schema version, every key
 * the loop reads with its type, finite numbers, exactly the three graphs, [steps, F] time features, paths relative
 * and inside the bundle, every file the loop reads listed with a hash. Beyond Python's reader it checks the graphs'
 * input and output names and shapes against what this loop feeds them. A problem is one BundleException.
 */
public final class Manifest {
    public static final int SCHEMA = 1;
    public static final double MAX_GUIDANCE = 30.0;
    public static final List<String> GRAPH_NAMES = List.of("encoder", "unet", "decoder");
    private static final int LATENT_CHANNELS = 4;
    private static final int UNET_CHANNELS = 2 * LATENT_CHANNELS + 1;  // noisy latent, mask, masked-image latent

    public final String model;
    public final String target;
    public final String backend;
    public final String quant;
    public final int imageSize;
    public final int latentSize;
    /** End to end: max abs of the decoded image in [0, 1] against the fp32 torch pipeline; null when unknown. */
    public final Double tolerance;
    public final Map<String, GraphSpec> graphs;
    public final Schedule schedule;
    public final float guidance;
    public final float noiseOffset;
    public final String timeFeaturesFile;
    public final int timeFeatureSize;
    /** Every file but the manifest -> its sha256 (hex). */
    public final Map<String, String> files;

    private Manifest(ManifestFields top, ManifestFields sampling, Map<String, GraphSpec> graphs, Schedule schedule,
                     String timeFeaturesFile, int timeFeatureSize, Map<String, String> files) throws BundleException {
        this.model = top.string("model");
        this.target = top.string("target");
        this.backend = top.string("backend");
        this.quant = top.string("quant");
        this.imageSize = top.integer("image_size");
        this.latentSize = top.integer("latent_size");
        ManifestFields tolerance = top.child("end_to_end_tolerance");
        this.tolerance = tolerance.has("max_abs_image01") ? tolerance.number("max_abs_image01") : null;
        this.graphs = Collections.unmodifiableMap(graphs);
        this.schedule = schedule;
        this.guidance = (float) sampling.number("guidance");
        this.noiseOffset = (float) sampling.number("noise_offset");
        this.timeFeaturesFile = timeFeaturesFile;
        this.timeFeatureSize = timeFeatureSize;
        this.files = Collections.unmodifiableMap(files);
    }

    public GraphSpec graph(String name) {
        return graphs.get(name);
    }

    /** The manifest's text -> Manifest; `source` names the file in every error. */
    public static Manifest parse(String text, String source) throws BundleException {
        JSONObject raw;
        try {
            raw = new JSONObject(text);
        } catch (JSONException err) {
            throw new BundleException(source + ": not valid JSON (" + err.getMessage() + ")", err);
        }
        Object schema = raw.opt("schema");
        if (!(schema instanceof Integer) || (Integer) schema != SCHEMA) {
            throw new BundleException(source + ": schema " + schema + ", this app reads schema " + SCHEMA);
        }
        ManifestFields top = new ManifestFields(raw, "", source);
        ManifestFields graphFields = top.child("graphs");
        List<String> names = new ArrayList<>();
        graphFields.keys().forEach(names::add);
        if (names.size() != GRAPH_NAMES.size() || !names.containsAll(GRAPH_NAMES)) {
            throw new BundleException(source + ": manifest 'graphs' must hold exactly " + String.join(", ", GRAPH_NAMES));
        }
        Map<String, GraphSpec> graphs = new LinkedHashMap<>();
        for (String name : GRAPH_NAMES) {
            graphs.put(name, graph(name, graphFields.child(name)));
        }
        ManifestFields sampling = top.child("sampling");
        Schedule schedule = schedule(sampling.child("scheduler"));
        ManifestFields features = sampling.child("time_features");
        int[] shape = features.integers("shape");
        if (shape.length != 2 || shape[0] != schedule.steps() || shape[1] <= 0) {
            throw features.error("shape", "must be [steps, F] with steps = " + schedule.steps());
        }
        Map<String, String> files = new TreeMap<>();
        ManifestFields listed = top.child("files");
        for (String name : listed.keys()) {
            listed.checkBundlePath(name, "files." + name);
            files.put(name, listed.string(name));
        }
        Manifest manifest = new Manifest(top, sampling, graphs, schedule, features.file("file"), shape[1], files);
        checkValues(manifest, top, sampling, features);
        checkGraphContract(manifest, source);
        List<String> read = new ArrayList<>();
        graphs.values().forEach(graph -> read.add(graph.file));
        read.add(manifest.timeFeaturesFile);
        read.add(top.file("golden"));
        for (String name : read) {
            boolean isListed = files.containsKey(name)
                    || files.keySet().stream().anyMatch(file -> file.startsWith(name + "/"));
            if (!isListed) {
                throw new BundleException(source + ": manifest 'files' does not list " + name
                        + " (every file read must be hashed)");
            }
        }
        return manifest;
    }

    private static GraphSpec graph(String name, ManifestFields fields) throws BundleException {
        return new GraphSpec(name, fields.file("file"), tensors(fields, "inputs"), tensors(fields, "outputs"));
    }

    private static List<TensorSpec> tensors(ManifestFields graph, String key) throws BundleException {
        List<TensorSpec> specs = new ArrayList<>();
        for (ManifestFields tensor : graph.objects(key)) {
            int[] shape = tensor.integers("shape");
            if (Arrays.stream(shape).anyMatch(n -> n <= 0)) {
                throw tensor.error("shape", "must be positive integers");
            }
            if (!tensor.string("dtype").equals("float32")) {
                throw tensor.error("dtype", "must be float32 (every input and output is)");
            }
            specs.add(new TensorSpec(tensor.string("name"), shape));
        }
        return specs;
    }

    private static Schedule schedule(ManifestFields fields) throws BundleException {
        int[] timesteps = fields.integers("timesteps");
        float[] alphas = fields.numbers("alphas_cumprod");
        float[] alphasNext = fields.numbers("alphas_cumprod_next");
        if (timesteps.length == 0 || timesteps.length != alphas.length || alphas.length != alphasNext.length) {
            throw fields.problem("needs as many integer timesteps as alphas");
        }
        for (float[] values : List.of(alphas, alphasNext)) {
            for (float alpha : values) {
                if (!(alpha > 0 && alpha <= 1)) {
                    throw fields.problem("alphas must be in (0, 1]");
                }
            }
        }
        return new Schedule(timesteps, alphas, alphasNext);
    }

    /** The values the loop relies on, beyond their types (edge.bundle.manifest._check_values). */
    private static void checkValues(Manifest manifest, ManifestFields top, ManifestFields sampling,
                                    ManifestFields features) throws BundleException {
        if (manifest.latentSize <= 0 || manifest.imageSize != 8 * manifest.latentSize) {
            throw top.error("image_size", "must be 8 x latent_size (f = 8)");
        }
        if (!Arrays.equals(sampling.strings("unet_batch"), new String[] {"uncond", "cond"})) {
            throw sampling.error("unet_batch", "must be [\"uncond\", \"cond\"]");
        }
        double strength = sampling.number("strength");
        if (!(strength > 0 && strength <= 1)) {
            throw sampling.error("strength", "must be in (0, 1]");
        }
        if (!(manifest.guidance >= 0 && manifest.guidance <= MAX_GUIDANCE)) {
            throw sampling.error("guidance", "must be in 0.." + MAX_GUIDANCE);
        }
        if (!(manifest.noiseOffset >= 0 && manifest.noiseOffset <= 1)) {
            throw sampling.error("noise_offset", "must be in 0..1");
        }
        if (!features.string("dtype").equals("float32")) {
            throw features.error("dtype", "must be float32");
        }
        if (!(top.child("vae").number("scaling_factor") > 0)) {
            throw top.error("vae.scaling_factor", "must be positive");
        }
    }

    /** The names and shapes this loop feeds the graphs and reads back (edge/compile/graphs.py's three graphs). */
    private static void checkGraphContract(Manifest manifest, String source) throws BundleException {
        int size = manifest.imageSize;
        int latent = manifest.latentSize;
        List<String> problems = new ArrayList<>();
        GraphSpec encoder = manifest.graph("encoder");
        GraphSpec unet = manifest.graph("unet");
        GraphSpec decoder = manifest.graph("decoder");
        expect(problems, encoder, encoder.inputs, new TensorSpec("image", new int[] {1, 3, size, size}));
        expect(problems, encoder, encoder.outputs, new TensorSpec("latent", new int[] {1, LATENT_CHANNELS, latent, latent}));
        expect(problems, unet, unet.inputs, new TensorSpec("latent", new int[] {2, UNET_CHANNELS, latent, latent}),
                new TensorSpec("time_features", new int[] {1, manifest.timeFeatureSize}));
        expect(problems, unet, unet.outputs, new TensorSpec("noise", new int[] {2, LATENT_CHANNELS, latent, latent}));
        expect(problems, decoder, decoder.inputs, new TensorSpec("latent", new int[] {1, LATENT_CHANNELS, latent, latent}));
        expect(problems, decoder, decoder.outputs, new TensorSpec("image", new int[] {1, 3, size, size}));
        if (!problems.isEmpty()) {
            throw new BundleException(source + ": " + problems.get(0));
        }
    }

    private static void expect(List<String> problems, GraphSpec graph, List<TensorSpec> actual, TensorSpec... expected) {
        String side = actual == graph.inputs ? "inputs" : "outputs";
        boolean same = actual.size() == expected.length;
        for (int i = 0; same && i < expected.length; i++) {
            same = actual.get(i).is(expected[i].name, expected[i].shape());
        }
        if (!same) {
            problems.add("manifest 'graphs." + graph.name + "." + side + "' are " + actual + ", this loop needs "
                    + Arrays.asList(expected));
        }
    }
}
