package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestReporter;

/** The whole Java loop (Inpainter) against Python's trace of inpaint_image: every graph input, the final picture. */
class SamplerTest {
    private static Goldens goldens;
    private static Recorded recorded;
    private static Bundle bundle;

    @BeforeAll
    static void load() throws Exception {
        goldens = Goldens.load();
        recorded = Recorded.load(goldens);
        bundle = goldens.bundle();
    }

    /** Records the steps it hears; cancels once `cancelAfter` steps are done (never when negative). */
    private static final class Steps implements SamplingListener {
        final List<Integer> done = new ArrayList<>();
        final int cancelAfter;

        Steps(int cancelAfter) {
            this.cancelAfter = cancelAfter;
        }

        @Override
        public void onStep(int step, int total) {
            assertEquals(bundle.manifest.schedule.steps(), total);
            done.add(step);
        }

        @Override
        public boolean isCancelled() {
            return cancelAfter >= 0 && done.size() >= cancelAfter;
        }
    }

    @Test
    void loopTraceAndPictureMatchPython(TestReporter reporter) throws Exception {
        Manifest manifest = bundle.manifest;
        ReplayedGraph encoder = new ReplayedGraph(manifest.graph("encoder"), recorded);
        ReplayedGraph unet = new ReplayedGraph(manifest.graph("unet"), recorded);
        ReplayedGraph decoder = new ReplayedGraph(manifest.graph("decoder"), recorded);
        Steps steps = new Steps(-1);
        Picture ours = new Inpainter(bundle, new InpaintGraphs(manifest, encoder, unet, decoder)).inpaint(
                goldens.image(), goldens.binaryMask(), goldens.floats(goldens.index.getString("noise")),
                steps);
        assertEquals(0, encoder.callsLeft() + unet.callsLeft() + decoder.callsLeft(), "every recorded call made");
        double worst = Math.max(encoder.worstInputDifference(),
                Math.max(unet.worstInputDifference(), decoder.worstInputDifference()));
        reporter.publishEntry("max_abs_trace_inputs", String.valueOf(worst));
        Picture python = goldens.picture(goldens.index.getString("output"), ours.width, ours.height);
        int levels = Pictures.maxLevelDifference(ours, python);
        reporter.publishEntry("levels_trace_picture", String.valueOf(levels));
        assertEquals(0, levels, "the picture Python's inpaint_image made");
        List<Integer> expected = new ArrayList<>();
        for (int i = 1; i <= manifest.schedule.steps(); i++) {
            expected.add(i);
        }
        assertEquals(expected, steps.done, "progress after every step");
    }

    /** Replays Python's calls; notes every open and close in `events`, and fails if two programs are open at once. */
    private static final class CountingFactory implements GraphRunnerFactory {
        final List<String> events = new ArrayList<>();
        int open;

        @Override
        public GraphRunner open(File program, GraphSpec spec) {
            assertEquals(bundle.programFile(spec.name), program);
            assertEquals(0, open, "opening " + spec.name + " while another program is open");
            open++;
            events.add("open " + spec.name);
            ReplayedGraph replayed = new ReplayedGraph(spec, recorded);
            return new GraphRunner() {
                @Override
                public Map<String, float[]> run(Map<String, float[]> inputs) {
                    return replayed.run(inputs);
                }

                @Override
                public void close() {
                    open--;
                    events.add("close " + spec.name);
                }
            };
        }
    }

    @Test
    void openedBundleHoldsOneProgramAtATime() throws Exception {
        CountingFactory factory = new CountingFactory();
        Picture ours;
        try (InpaintGraphs graphs = InpaintGraphs.open(bundle, factory)) {
            ours = new Inpainter(bundle, graphs).inpaint(goldens.image(), goldens.binaryMask(),
                    goldens.floats(goldens.index.getString("noise")), SamplingListener.NONE);
        }
        assertEquals(List.of("open encoder", "close encoder", "open unet", "close unet", "open decoder", "close decoder"),
                factory.events, "each program loaded once per inpaint and released before the next");
        Picture python = goldens.picture(goldens.index.getString("output"), ours.width, ours.height);
        assertEquals(0, Pictures.maxLevelDifference(ours, python), "the picture Python's inpaint_image made");
    }

    @Test
    void cancelStopsBeforeTheNextGraphCall() throws Exception {
        Manifest manifest = bundle.manifest;
        ReplayedGraph unet = new ReplayedGraph(manifest.graph("unet"), recorded);
        ReplayedGraph decoder = new ReplayedGraph(manifest.graph("decoder"), recorded);
        InpaintGraphs graphs = new InpaintGraphs(manifest, new ReplayedGraph(manifest.graph("encoder"), recorded), unet, decoder);
        Steps steps = new Steps(3);
        ModelInputs inputs = ModelInputs.prepare(goldens.image(), goldens.binaryMask(),
                manifest.imageSize, manifest.latentSize);
        float[] noise = goldens.floats(goldens.index.getString("noise"));
        assertThrows(CancellationException.class, () -> new Sampler(bundle, graphs).sample(inputs, noise, steps));
        assertEquals(List.of(1, 2, 3), steps.done);
        assertEquals(manifest.schedule.steps() - 3, unet.callsLeft(), "no unet call after the cancel");
        assertEquals(1, decoder.callsLeft(), "no decode after the cancel");
    }

    @Test
    void emptyOrMisSizedMaskIsRefusedBeforeAnyGraphRuns() throws Exception {
        InpaintGraphs graphs = ReplayedGraph.all(bundle.manifest, recorded);
        Inpainter inpainter = new Inpainter(bundle, graphs);
        Picture image = goldens.image();
        Channel empty = new Channel(image.width, image.height, new int[image.width * image.height]);
        IllegalArgumentException nothing = assertThrows(IllegalArgumentException.class,
                () -> inpainter.inpaint(image, empty, 0L, SamplingListener.NONE));
        assertEquals("mask is empty: nothing to fill (white = fill, black = keep)", nothing.getMessage());
        Channel small = new Channel(2, 2, new int[] {255, 0, 0, 0});
        IllegalArgumentException size = assertThrows(IllegalArgumentException.class,
                () -> inpainter.inpaint(image, small, 0L, SamplingListener.NONE));
        assertEquals("mask is 2x2 but the image is 256x256", size.getMessage());
    }
}
