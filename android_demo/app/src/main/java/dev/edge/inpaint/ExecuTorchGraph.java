package dev.edge.inpaint;

import dev.edge.core.GraphException;
import dev.edge.core.GraphRunner;
import dev.edge.core.GraphSpec;
import dev.edge.core.TensorSpec;
import java.io.File;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * One .pte program run by ExecuTorch's Android runtime (org.pytorch:executorch-android): the manifest's inputs, in
 * order, as float32 tensors of their shapes into `forward`; its outputs by the manifest's names. XNNPACK and Vulkan
 * programs load the same way; the AAR must hold the backend the program was delegated to.
 */
final class ExecuTorchGraph implements GraphRunner {
    private final Module module;
    private final GraphSpec spec;

    private ExecuTorchGraph(Module module, GraphSpec spec) {
        this.module = module;
        this.spec = spec;
    }

    static GraphRunner open(File program, GraphSpec spec) throws GraphException {
        try {
            return new ExecuTorchGraph(Module.load(program.getAbsolutePath(), Module.LOAD_MODE_MMAP), spec);
        } catch (RuntimeException err) {
            throw new GraphException(spec.name + ": ExecuTorch cannot load " + program.getName() + " (" + err.getMessage()
                    + ")", err);
        }
    }

    @Override
    public Map<String, float[]> run(Map<String, float[]> inputs) throws GraphException {
        List<TensorSpec> specs = spec.inputs;
        EValue[] values = new EValue[specs.size()];
        for (int i = 0; i < values.length; i++) {
            TensorSpec input = specs.get(i);
            float[] data = inputs.get(input.name);
            if (data == null || data.length != input.elements()) {
                throw new GraphException(spec.name + ": input '" + input.name + "' needs " + input.elements() + " values");
            }
            values[i] = EValue.from(Tensor.fromBlob(data, longs(input.shape())));
        }
        EValue[] results;
        try {
            results = module.forward(values);
        } catch (RuntimeException err) {
            throw new GraphException(spec.name + ": ExecuTorch failed (" + err.getMessage() + ")", err);
        }
        if (results.length != spec.outputs.size()) {
            throw new GraphException(spec.name + ": " + results.length + " outputs, the manifest lists "
                    + spec.outputs.size());
        }
        Map<String, float[]> outputs = new HashMap<>();
        for (int i = 0; i < results.length; i++) {
            outputs.put(spec.outputs.get(i).name, results[i].toTensor().getDataAsFloatArray());
        }
        return outputs;
    }

    private static long[] longs(int[] shape) {
        long[] result = new long[shape.length];
        for (int i = 0; i < shape.length; i++) {
            result[i] = shape[i];
        }
        return result;
    }

    @Override
    public void close() {
        module.destroy();
    }
}
