package dev.edge.core;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A GraphRunner over android_demo/runner (edge_runner, built against the executorch wheel): each call writes the
 * inputs as raw float32 files, runs the program once after one warm-up, and reads output 0 back. The real .pte
 * programs on this machine's CPU, through the same ExecuTorch runtime an Android build links.
 */
final class NativeRunnerGraph implements GraphRunner {
    private final File runner;
    private final File program;
    private final GraphSpec spec;
    private final File scratch;

    NativeRunnerGraph(File runner, File program, GraphSpec spec, File scratch) {
        this.runner = runner;
        this.program = program;
        this.spec = spec;
        this.scratch = scratch;
    }

    @Override
    public Map<String, float[]> run(Map<String, float[]> inputs) throws GraphException {
        List<String> command = new ArrayList<>(List.of(runner.getPath(), "--model", program.getPath(), "--runs", "1",
                "--warmup", "1"));
        try {
            for (TensorSpec input : spec.inputs) {
                File file = new File(scratch, spec.name + "." + input.name + ".f32");
                write(file, inputs.get(input.name));
                StringBuilder shape = new StringBuilder();
                for (int n : input.shape()) {
                    shape.append(shape.length() == 0 ? "" : "x").append(n);
                }
                command.addAll(List.of("--input", file.getPath() + ":" + shape));
            }
            File output = new File(scratch, spec.name + ".output.f32");
            command.addAll(List.of("--output", output.getPath()));
            Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
            String said = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (process.waitFor() != 0) {
                throw new GraphException(spec.name + ": the native runner failed: " + said.trim());
            }
            Map<String, float[]> outputs = new HashMap<>();
            outputs.put(spec.outputs.get(0).name, read(output));
            return outputs;
        } catch (IOException err) {
            throw new GraphException(spec.name + ": " + err.getMessage(), err);
        } catch (InterruptedException err) {
            Thread.currentThread().interrupt();
            throw new GraphException(spec.name + ": interrupted", err);
        }
    }

    private static void write(File file, float[] values) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        buffer.asFloatBuffer().put(values);
        Files.write(file.toPath(), buffer.array());
    }

    private static float[] read(File file) throws IOException {
        ByteBuffer buffer = ByteBuffer.wrap(Files.readAllBytes(file.toPath())).order(ByteOrder.LITTLE_ENDIAN);
        float[] values = new float[buffer.remaining() / 4];
        buffer.asFloatBuffer().get(values);
        return values;
    }
}
