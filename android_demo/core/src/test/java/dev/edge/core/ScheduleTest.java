package dev.edge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestReporter;

/** The manifest's DDIM schedule, the start noise and every CFG + DDIM step against Python's recorded loop. */
class ScheduleTest {
    private static Goldens goldens;
    private static Recorded recorded;
    private static Bundle bundle;

    @BeforeAll
    static void load() throws Exception {
        goldens = Goldens.load();
        recorded = Recorded.load(goldens);
        bundle = goldens.bundle();
    }

    @Test
    void scheduleRunsNineteenStepsFrom900To0() {
        Schedule schedule = bundle.manifest.schedule;
        assertEquals(19, schedule.steps());
        assertEquals(900, schedule.timestep(0));
        assertEquals(0, schedule.timestep(schedule.steps() - 1));
        assertEquals(1f, schedule.alphaNext(schedule.steps() - 1));
        assertEquals(recorded.of("unet").size(), schedule.steps());
    }

    @Test
    void startLatentIsTheCleanLatentNoisedToTheFirstTimestep(TestReporter reporter) throws Exception {
        float[] latents = recorded.of("encoder").get(0).output;
        float[] noisy = bundle.manifest.schedule.addNoise(latents, goldens.floats(goldens.index.getString("noise")));
        float[] python = Arrays.copyOf(recorded.of("unet").get(0).inputs.get(0), noisy.length);
        reporter.publishEntry("max_abs_noisy_start", String.valueOf(Floats.assertWithinRounding(noisy, python, "start")));
    }

    @Test
    void everyCfgStepMatchesPython(TestReporter reporter) {
        Manifest manifest = bundle.manifest;
        List<Recorded.Call> unet = recorded.of("unet");
        float[] finalLatent = recorded.of("decoder").get(0).inputs.get(0);
        double worst = 0;
        for (int i = 0; i < unet.size(); i++) {
            float[] x = Arrays.copyOf(unet.get(i).inputs.get(0), finalLatent.length);
            float[] next = manifest.schedule.step(i, x, Sampler.guided(unet.get(i).output, manifest.guidance));
            float[] python = i + 1 < unet.size() ? Arrays.copyOf(unet.get(i + 1).inputs.get(0), next.length) : finalLatent;
            worst = Math.max(worst, Floats.assertWithinRounding(next, python, "step " + i));
            assertArrayEquals(unet.get(i).inputs.get(1), bundle.timeFeatures(i), "time features of step " + i);
        }
        reporter.publishEntry("max_abs_cfg_step", String.valueOf(worst));
    }

    @Test
    void seededNoiseIsReproducibleAndOffsetPerChannel() {
        float[] noise = StartNoise.seeded(3, 16, 0.5f);
        assertArrayEquals(noise, StartNoise.seeded(3, 16, 0.5f));
        float[] plain = StartNoise.seeded(3, 16, 0f);
        float[] other = StartNoise.seeded(4, 16, 0.5f);
        assertEquals(4 * 16 * 16, noise.length);
        assertEquals(false, Arrays.equals(noise, other));
        for (int c = 0; c < 4; c++) {
            float offset = noise[c * 256] - plain[c * 256];
            for (int j = 0; j < 256; j++) {
                assertEquals(offset, noise[c * 256 + j] - plain[c * 256 + j], 1e-5f, "one offset per channel");
            }
        }
    }
}
