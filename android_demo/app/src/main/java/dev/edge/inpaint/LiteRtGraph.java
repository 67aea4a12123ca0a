package dev.edge.inpaint;

import dev.edge.core.GraphException;
import dev.edge.core.GraphRunner;
import dev.edge.core.GraphSpec;
import dev.edge.core.TensorSpec;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.Map;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;

/**
 * One .tflite program run by LiteRT's Interpreter (com.google.ai.edge.litert:litert) through its serving signature,
 * as edge/backends/tflite runs it: litert-torch names the inputs args_0, args_1, ... in the manifest's order, and the
 * one output is the manifest's. An int8 input or output is (de)quantized with its scale and zero point.
 */
final class LiteRtGraph implements GraphRunner {
    private static final String SIGNATURE = "serving_default";

    private final Interpreter interpreter;
    private final GraphSpec spec;
    private final String outputName;

    private LiteRtGraph(Interpreter interpreter, GraphSpec spec, String outputName) {
        this.interpreter = interpreter;
        this.spec = spec;
        this.outputName = outputName;
    }

    static GraphRunner open(File program, GraphSpec spec) throws GraphException {
        Interpreter interpreter;
        try {
            Interpreter.Options options = new Interpreter.Options().setNumThreads(Runtime.getRuntime().availableProcessors());
            interpreter = new Interpreter(program, options);
        } catch (RuntimeException err) {
            throw new GraphException(spec.name + ": LiteRT cannot load " + program.getName() + " (" + err.getMessage()
                    + ")", err);
        }
        String[] outputs = interpreter.getSignatureOutputs(SIGNATURE);
        if (outputs.length != 1 || spec.outputs.size() != 1) {
            interpreter.close();
            throw new GraphException(spec.name + ": signature " + SIGNATURE + " has " + outputs.length
                    + " outputs, the manifest lists " + spec.outputs.size());
        }
        return new LiteRtGraph(interpreter, spec, outputs[0]);
    }

    @Override
    public Map<String, float[]> run(Map<String, float[]> inputs) throws GraphException {
        Map<String, Object> feed = new HashMap<>();
        for (int i = 0; i < spec.inputs.size(); i++) {
            TensorSpec input = spec.inputs.get(i);
            String name = "args_" + i;
            feed.put(name, toRuntime(inputs.get(input.name), interpreter.getInputTensorFromSignature(name, SIGNATURE),
                    input));
        }
        Tensor output = interpreter.getOutputTensorFromSignature(outputName, SIGNATURE);
        ByteBuffer result = ByteBuffer.allocateDirect(output.numBytes()).order(ByteOrder.nativeOrder());
        Map<String, Object> outputs = new HashMap<>();
        outputs.put(outputName, result);
        try {
            interpreter.runSignature(feed, outputs, SIGNATURE);
        } catch (RuntimeException err) {
            throw new GraphException(spec.name + ": LiteRT failed (" + err.getMessage() + ")", err);
        }
        result.rewind();
        Map<String, float[]> named = new HashMap<>();
        named.put(spec.outputs.get(0).name, fromRuntime(result, output));
        return named;
    }

    private ByteBuffer toRuntime(float[] values, Tensor tensor, TensorSpec input) throws GraphException {
        if (values == null || values.length != tensor.numElements()) {
            throw new GraphException(spec.name + ": input '" + input.name + "' needs " + tensor.numElements() + " values");
        }
        ByteBuffer buffer = ByteBuffer.allocateDirect(tensor.numBytes()).order(ByteOrder.nativeOrder());
        if (tensor.dataType() == DataType.FLOAT32) {
            buffer.asFloatBuffer().put(values);
        } else if (tensor.dataType() == DataType.INT8) {
            Tensor.QuantizationParams quantization = tensor.quantizationParams();
            for (float value : values) {
                long level = Math.round(value / quantization.getScale()) + quantization.getZeroPoint();
                buffer.put((byte) Math.max(-128, Math.min(127, level)));
            }
        } else {
            throw new GraphException(spec.name + ": input '" + input.name + "' is " + tensor.dataType()
                    + ", this app feeds float32 or int8");
        }
        buffer.rewind();
        return buffer;
    }

    private float[] fromRuntime(ByteBuffer buffer, Tensor tensor) throws GraphException {
        float[] values = new float[tensor.numElements()];
        if (tensor.dataType() == DataType.FLOAT32) {
            buffer.asFloatBuffer().get(values);
        } else if (tensor.dataType() == DataType.INT8) {
            Tensor.QuantizationParams quantization = tensor.quantizationParams();
            for (int i = 0; i < values.length; i++) {
                values[i] = (buffer.get() - quantization.getZeroPoint()) * quantization.getScale();
            }
        } else {
            throw new GraphException(spec.name + ": output is " + tensor.dataType() + ", this app reads float32 or int8");
        }
        return values;
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
