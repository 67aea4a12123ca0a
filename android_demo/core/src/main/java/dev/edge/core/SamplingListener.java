package dev.edge.core;

/** What a caller hears from the sampler, and how it stops it: asked before every graph call. */
public interface SamplingListener {
    /** After each sampling step: done of total steps. */
    void onStep(int done, int total);

    /** True to stop: the sampler throws java.util.concurrent.CancellationException before its next graph call. */
    boolean isCancelled();

    SamplingListener NONE = new SamplingListener() {
        @Override
        public void onStep(int done, int total) {
        }

        @Override
        public boolean isCancelled() {
            return false;
        }
    };
}
