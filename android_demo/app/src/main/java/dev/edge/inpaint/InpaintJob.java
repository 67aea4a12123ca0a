package dev.edge.inpaint;

import android.graphics.Bitmap;
import android.os.Handler;
import android.os.Looper;
import android.os.SystemClock;
import dev.edge.core.Bundle;
import dev.edge.core.BundleException;
import dev.edge.core.Channel;
import dev.edge.core.GraphException;
import dev.edge.core.InpaintGraphs;
import dev.edge.core.Inpainter;
import dev.edge.core.MaskRule;
import dev.edge.core.Picture;
import dev.edge.core.SamplingListener;
import java.io.File;
import java.util.concurrent.CancellationException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One inpaint, run on a worker thread: the bundle opened (and every file's sha256 checked) by core, its programs
 * loaded in the runtime its backend names, the photo sampled; every step, the result and any failure are posted
 * to the UI thread. cancel() stops it before the next graph call.
 */
final class InpaintJob implements Runnable, SamplingListener {
    /** Called on the UI thread. */
    interface Callbacks {
        void onStep(int done, int total);

        void onDone(Bitmap result, long millis);

        void onCancelled();

        void onFailed(String message);
    }

    private final File bundleFolder;
    private final Picture photo;
    private final int[] maskArgb;
    private final long seed;
    private final Callbacks callbacks;
    private final Handler ui = new Handler(Looper.getMainLooper());
    private final AtomicBoolean cancelled = new AtomicBoolean();

    /** photo: the picked photo's pixels; maskArgb: the painted layer's, the same size (white = fill). */
    InpaintJob(File bundleFolder, Picture photo, int[] maskArgb, long seed, Callbacks callbacks) {
        this.bundleFolder = bundleFolder;
        this.photo = photo;
        this.maskArgb = maskArgb;
        this.seed = seed;
        this.callbacks = callbacks;
    }

    void cancel() {
        cancelled.set(true);
    }

    @Override
    public void run() {
        long started = SystemClock.elapsedRealtime();
        try {
            Bundle bundle = Bundle.open(bundleFolder);
            Channel mask = MaskRule.binarize(photo.width, photo.height, maskArgb, false);
            try (InpaintGraphs graphs = InpaintGraphs.open(bundle, GraphRunners.forBackend(bundle.manifest.backend))) {
                Picture result = new Inpainter(bundle, graphs).inpaint(photo, mask, seed, this);
                Bitmap bitmap = Pictures.toBitmap(result);
                long millis = SystemClock.elapsedRealtime() - started;
                ui.post(() -> callbacks.onDone(bitmap, millis));
            }
        } catch (CancellationException err) {
            ui.post(callbacks::onCancelled);
        } catch (BundleException | GraphException | IllegalArgumentException err) {
            ui.post(() -> callbacks.onFailed(err.getMessage()));
        }
    }

    @Override
    public void onStep(int done, int total) {
        ui.post(() -> callbacks.onStep(done, total));
    }

    @Override
    public boolean isCancelled() {
        return cancelled.get();
    }
}
