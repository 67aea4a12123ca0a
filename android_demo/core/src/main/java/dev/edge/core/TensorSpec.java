package dev.edge.core;

import java.util.Arrays;

/** One float32 input or output of a graph, as the manifest names and shapes it. */
public final class TensorSpec {
    public final String name;
    private final int[] shape;

    public TensorSpec(String name, int[] shape) {
        this.name = name;
        this.shape = shape.clone();
    }

    public int[] shape() {
        return shape.clone();
    }

    public int elements() {
        int count = 1;
        for (int n : shape) {
            count *= n;
        }
        return count;
    }

    public boolean is(String expectedName, int... expectedShape) {
        return name.equals(expectedName) && Arrays.equals(shape, expectedShape);
    }

    @Override
    public String toString() {
        return name + " " + Arrays.toString(shape);
    }
}
