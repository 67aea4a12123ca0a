package dev.edge.core;

import java.util.Collections;
import java.util.List;

/** One of the bundle's three programs: its file inside the bundle and its float32 inputs and outputs, in order. */
public final class GraphSpec {
    public final String name;
    public final String file;
    public final List<TensorSpec> inputs;
    public final List<TensorSpec> outputs;

    public GraphSpec(String name, String file, List<TensorSpec> inputs, List<TensorSpec> outputs) {
        this.name = name;
        this.file = file;
        this.inputs = Collections.unmodifiableList(inputs);
        this.outputs = Collections.unmodifiableList(outputs);
    }
}
