package dev.edge.core;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.json.JSONArray;
import org.json.JSONObject;

/** Every graph call of Python's inpaint_image over the bundle's programs, in order: graph, inputs, output. */
final class Recorded {
    static final class Call {
        final String graph;
        final List<float[]> inputs;
        final float[] output;

        Call(String graph, List<float[]> inputs, float[] output) {
            this.graph = graph;
            this.inputs = inputs;
            this.output = output;
        }
    }

    final List<Call> calls;

    private Recorded(List<Call> calls) {
        this.calls = calls;
    }

    static Recorded load(Goldens goldens) throws Exception {
        List<Call> calls = new ArrayList<>();
        JSONArray list = goldens.index.getJSONArray("calls");
        for (int i = 0; i < list.length(); i++) {
            JSONObject call = list.getJSONObject(i);
            List<float[]> inputs = new ArrayList<>();
            JSONArray files = call.getJSONArray("inputs");
            for (int j = 0; j < files.length(); j++) {
                inputs.add(goldens.floats(files.getString(j)));
            }
            calls.add(new Call(call.getString("graph"), inputs, goldens.floats(call.getString("output"))));
        }
        return new Recorded(calls);
    }

    float[] input(int call, int index) {
        return calls.get(call).inputs.get(index);
    }

    List<Call> of(String graph) {
        List<Call> matching = new ArrayList<>();
        for (Call call : calls) {
            if (call.graph.equals(graph)) {
                matching.add(call);
            }
        }
        return matching;
    }
}
