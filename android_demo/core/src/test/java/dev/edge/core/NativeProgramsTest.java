package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestReporter;
import org.junit.jupiter.api.io.TempDir;

/**
 * End to end with the real programs: the Java loop runs the bundle's .pte files through the native runner and
 * inpaints the held-out pair with Python's start noise; its picture is `edge inpaint --bundle`'s, within the
 * bundle's end-to-end tolerance.
 */
class NativeProgramsTest {
    @TempDir
    File scratch;
    private LastOutput decoder;

    /** Keeps the last output of the graph it wraps. */
    private static final class LastOutput implements GraphRunner {
        private final GraphRunner graph;
        Map<String, float[]> last;

        LastOutput(GraphRunner graph) {
            this.graph = graph;
        }

        @Override
        public Map<String, float[]> run(Map<String, float[]> inputs) throws GraphException {
            last = graph.run(inputs);
            return last;
        }
    }

    @Test
    void javaLoopWithTheRealProgramsInpaintsLikeEdgeInpaint(TestReporter reporter) throws Exception {
        Goldens goldens = Goldens.load();
        Bundle bundle = goldens.bundle();
        File runner = new File(System.getProperty("edge.runner"));
        GraphRunnerFactory factory = (program, spec) -> {
            GraphRunner graph = new NativeRunnerGraph(runner, program, spec, scratch);
            if (spec.name.equals("decoder")) {
                decoder = new LastOutput(graph);
                return decoder;
            }
            return graph;
        };
        Manifest manifest = bundle.manifest;
        Picture image = goldens.image();
        Picture ours;
        try (InpaintGraphs graphs = InpaintGraphs.open(bundle, factory)) {
            ours = new Inpainter(bundle, graphs).inpaint(image, goldens.binaryMask(),
                    goldens.floats(goldens.index.getString("noise")), SamplingListener.NONE);
        }

        float[] pythonImage01 = Recorded.load(goldens).of("decoder").get(0).output;
        double image01 = Floats.maxAbs(decoder.last.get("image"), pythonImage01);
        reporter.publishEntry("max_abs_image01_native", String.valueOf(image01));
        assertTrue(image01 <= manifest.tolerance, "decoded image " + image01 + " from Python's, tolerance " + manifest.tolerance);

        Picture cli = goldens.picture(goldens.index.getString("cli_output"), image.width, image.height);
        int levels = Pictures.maxLevelDifference(ours, cli);
        reporter.publishEntry("levels_native_picture", String.valueOf(levels));
        assertTrue(levels <= Math.ceil(manifest.tolerance * 255), "picture " + levels + " levels from edge inpaint's");
        double[] weight = PasteBack.weight(goldens.binaryMask());
        int[] input = image.argb();
        int[] result = ours.argb();
        for (int i = 0; i < weight.length; i++) {
            if (weight[i] == 0) {
                assertEquals(input[i], result[i], "pixel " + i + " outside the mask");
            }
        }
    }
}
