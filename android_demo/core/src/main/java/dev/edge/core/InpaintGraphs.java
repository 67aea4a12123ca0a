package dev.edge.core;

import java.util.HashMap;
import java.util.Map;

/**
 * The bundle's three programs in the calling convention of edge/compile/graphs.py: encode, denoise, decode. Inputs go
 * by the manifest's names; an output missing or of the wrong size is one GraphException naming the graph.
 *
 * <p>{@link #open} keeps one program loaded at a time: an inpaint calls the encoder twice, the UNet once per step and
 * the decoder once, so each program is loaded once per inpaint and released when the next one is needed. At 512 px
 * the activations, not the weights, dominate memory, and the three programs held together need about twice the peak
 * of the largest alone (benchmarks/README.md, "Native runner memory"); the reloads cost about 0.8 s of a 52 s int8
 * inpaint on the benchmark machine.
 */
public final class InpaintGraphs implements AutoCloseable {
    private final Manifest manifest;
    private final Bundle bundle;  // null when the runners were given already open
    private final GraphRunnerFactory factory;
    private final Map<String, GraphRunner> runners = new HashMap<>();

    /** Three runners already open, all held until {@link #close}. */
    public InpaintGraphs(Manifest manifest, GraphRunner encoder, GraphRunner unet, GraphRunner decoder) {
        this.manifest = manifest;
        this.bundle = null;
        this.factory = null;
        runners.putAll(Map.of("encoder", encoder, "unet", unet, "decoder", decoder));
    }

    private InpaintGraphs(Bundle bundle, GraphRunnerFactory factory) {
        this.manifest = bundle.manifest;
        this.bundle = bundle;
        this.factory = factory;
    }

    /** The bundle's programs, each loaded by the factory (what the bundle's backend runs on) when first called, and
     * released when another one is called. */
    public static InpaintGraphs open(Bundle bundle, GraphRunnerFactory factory) {
        return new InpaintGraphs(bundle, factory);
    }

    /** (1, 3, S, S) in [-1, 1] -> (1, 4, s, s) scaled latent. */
    public float[] encode(float[] image) throws GraphException {
        return run("encoder", image);
    }

    /** (2, 9, s, s) [uncond, cond], (1, F) -> (2, 4, s, s) predicted noise. */
    public float[] denoise(float[] latent, float[] timeFeatures) throws GraphException {
        return run("unet", latent, timeFeatures);
    }

    /** (1, 4, s, s) scaled latent -> (1, 3, S, S) in [0, 1]. */
    public float[] decode(float[] latent) throws GraphException {
        return run("decoder", latent);
    }

    private GraphRunner runner(String graph) throws GraphException {
        GraphRunner runner = runners.get(graph);
        if (runner == null) {
            close();  // the program in use before this one
            runner = factory.open(bundle.programFile(graph), manifest.graph(graph));
            runners.put(graph, runner);
        }
        return runner;
    }

    private float[] run(String graph, float[]... values) throws GraphException {
        GraphSpec spec = manifest.graph(graph);
        Map<String, float[]> inputs = new HashMap<>();
        for (int i = 0; i < values.length; i++) {
            inputs.put(spec.inputs.get(i).name, values[i]);
        }
        TensorSpec output = spec.outputs.get(0);
        float[] result = runner(graph).run(inputs).get(output.name);
        if (result == null || result.length != output.elements()) {
            throw new GraphException(graph + ": output '" + output.name + "' has "
                    + (result == null ? "no values" : result.length + " values") + ", the manifest says " + output);
        }
        return result;
    }

    @Override
    public void close() {
        runners.values().forEach(GraphRunner::close);
        runners.clear();
    }
}
