package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.Map;

/**
 * A graph that answers with Python's recorded outputs, call after call, after checking that the Java loop fed it
 * the inputs Python fed the real program (within float32 rounding): the loop's trace, compared step by step.
 */
final class ReplayedGraph implements GraphRunner {
    private final GraphSpec spec;
    private final Deque<Recorded.Call> remaining;
    private double worstInput;

    ReplayedGraph(GraphSpec spec, Recorded recorded) {
        this.spec = spec;
        this.remaining = new ArrayDeque<>(recorded.of(spec.name));
    }

    static InpaintGraphs all(Manifest manifest, Recorded recorded) {
        return new InpaintGraphs(manifest, new ReplayedGraph(manifest.graph("encoder"), recorded),
                new ReplayedGraph(manifest.graph("unet"), recorded), new ReplayedGraph(manifest.graph("decoder"), recorded));
    }

    @Override
    public Map<String, float[]> run(Map<String, float[]> inputs) {
        assertTrue(!remaining.isEmpty(), spec.name + ": called more often than in Python");
        Recorded.Call call = remaining.poll();
        assertEquals(spec.inputs.size(), inputs.size(), spec.name + ": inputs");
        for (int j = 0; j < spec.inputs.size(); j++) {
            float[] given = inputs.get(spec.inputs.get(j).name);
            worstInput = Math.max(worstInput, Floats.assertWithinRounding(given, call.inputs.get(j),
                    spec.name + " input " + spec.inputs.get(j).name));
        }
        Map<String, float[]> outputs = new HashMap<>();
        outputs.put(spec.outputs.get(0).name, call.output.clone());
        return outputs;
    }

    int callsLeft() {
        return remaining.size();
    }

    double worstInputDifference() {
        return worstInput;
    }
}
