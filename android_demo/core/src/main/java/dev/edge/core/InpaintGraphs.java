package dev.edge.core;

import java.util.HashMap;
import java.util.Map;

/**
 * The bundle's three programs in the calling convention of edge/compile/graphs.py: encode, denoise, decode. Inputs go
 * by the manifest's names; an output missing or of the wrong size is one GraphException naming the graph.
 */
public final class InpaintGraphs implements AutoCloseable {
    private final Manifest manifest;
    private final Map<String, GraphRunner> runners;

    public InpaintGraphs(Manifest manifest, GraphRunner encoder, GraphRunner unet, GraphRunner decoder) {
        this.manifest = manifest;
        this.runners = Map.of("encoder", encoder, "unet", unet, "decoder", decoder);
    }

    /** The bundle's programs, each loaded by the factory (what the bundle's backend runs on). */
    public static InpaintGraphs open(Bundle bundle, GraphRunnerFactory factory) throws GraphException {
        Map<String, GraphRunner> opened = new HashMap<>();
        try {
            for (String name : Manifest.GRAPH_NAMES) {
                opened.put(name, factory.open(bundle.programFile(name), bundle.manifest.graph(name)));
            }
        } catch (GraphException | RuntimeException err) {
            opened.values().forEach(GraphRunner::close);
            throw err;
        }
        return new InpaintGraphs(bundle.manifest, opened.get("encoder"), opened.get("unet"), opened.get("decoder"));
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

    private float[] run(String graph, float[]... values) throws GraphException {
        GraphSpec spec = manifest.graph(graph);
        Map<String, float[]> inputs = new HashMap<>();
        for (int i = 0; i < values.length; i++) {
            inputs.put(spec.inputs.get(i).name, values[i]);
        }
        TensorSpec output = spec.outputs.get(0);
        float[] result = runners.get(graph).run(inputs).get(output.name);
        if (result == null || result.length != output.elements()) {
            throw new GraphException(graph + ": output '" + output.name + "' has "
                    + (result == null ? "no values" : result.length + " values") + ", the manifest says " + output);
        }
        return result;
    }

    @Override
    public void close() {
        runners.values().forEach(GraphRunner::close);
    }
}
