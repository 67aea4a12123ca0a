package dev.edge.inpaint;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.provider.MediaStore;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.ProgressBar;
import android.widget.TextView;
import java.io.File;
import java.io.IOException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The screen: pick a photo, paint the mask, inpaint with a progress bar and a cancel button, see the result beside
 * the input, save it. Every slow thing (decoding, the loop, saving) runs on one worker thread.
 */
public final class MainActivity extends Activity implements InpaintJob.Callbacks {
    private static final int PICK_PHOTO = 1;
    private static final long SEED = 0;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private MaskView maskView;
    private ImageView resultView;
    private ProgressBar progress;
    private TextView status;
    private Button run;
    private Button cancel;
    private Button save;
    private InpaintJob job;
    private Bitmap result;

    /** Where `edge android push` puts the bundle: getExternalFilesDir(null)/bundle. */
    private File bundleFolder() {
        return new File(getExternalFilesDir(null), "bundle");
    }

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        setContentView(R.layout.activity_main);
        maskView = findViewById(R.id.mask_view);
        resultView = findViewById(R.id.result_view);
        progress = findViewById(R.id.progress);
        status = findViewById(R.id.status);
        run = findViewById(R.id.run);
        cancel = findViewById(R.id.cancel);
        save = findViewById(R.id.save);
        findViewById(R.id.pick).setOnClickListener(view -> pickPhoto());
        findViewById(R.id.clear).setOnClickListener(view -> maskView.clearMask());
        run.setOnClickListener(view -> inpaint());
        cancel.setOnClickListener(view -> job.cancel());
        save.setOnClickListener(view -> saveResult());
        if (!new File(bundleFolder(), dev.edge.core.Bundle.MANIFEST).isFile()) {
            status.setText(getString(R.string.no_bundle, bundleFolder().getAbsolutePath()));
        }
    }

    private void pickPhoto() {
        Intent pick = Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU
                ? new Intent(MediaStore.ACTION_PICK_IMAGES)
                : new Intent(Intent.ACTION_GET_CONTENT).setType("image/*");
        startActivityForResult(pick, PICK_PHOTO);
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (requestCode != PICK_PHOTO || resultCode != RESULT_OK || data == null || data.getData() == null) {
            return;
        }
        Uri uri = data.getData();
        worker.execute(() -> {
            try {
                Bitmap photo = Pictures.decode(getContentResolver(), uri);
                runOnUiThread(() -> {
                    maskView.setPhoto(photo);
                    resultView.setImageBitmap(null);
                    save.setEnabled(false);
                    status.setText(R.string.hint);
                });
            } catch (IOException err) {
                runOnUiThread(() -> onFailed(err.getMessage()));
            }
        });
    }

    private void inpaint() {
        if (!maskView.hasPhoto()) {
            status.setText(R.string.hint);
            return;
        }
        job = new InpaintJob(bundleFolder(), Pictures.toPicture(maskView.photo()), maskView.maskPixels(), SEED, this);
        setRunning(true);
        progress.setProgress(0);
        worker.execute(job);
    }

    private void setRunning(boolean running) {
        maskView.setPainting(!running);
        run.setEnabled(!running);
        cancel.setEnabled(running);
    }

    @Override
    public void onStep(int done, int total) {
        progress.setMax(total);
        progress.setProgress(done);
        status.setText(getString(R.string.step, done, total));
    }

    @Override
    public void onDone(Bitmap inpainted, long millis) {
        setRunning(false);
        result = inpainted;
        resultView.setImageBitmap(inpainted);
        save.setEnabled(true);
        status.setText(getString(R.string.done, millis / 1000.0));
    }

    @Override
    public void onCancelled() {
        setRunning(false);
        progress.setProgress(0);
        status.setText(R.string.cancelled);
    }

    @Override
    public void onFailed(String message) {
        setRunning(false);
        status.setText(getString(R.string.failed, message));
    }

    private void saveResult() {
        Bitmap toSave = result;
        worker.execute(() -> {
            try {
                GallerySaver.savePng(getContentResolver(), toSave, "edge-" + System.currentTimeMillis() + ".png");
                runOnUiThread(() -> status.setText(R.string.saved));
            } catch (IOException err) {
                runOnUiThread(() -> onFailed(err.getMessage()));
            }
        });
    }

    @Override
    protected void onDestroy() {
        if (job != null) {
            job.cancel();
        }
        worker.shutdown();
        super.onDestroy();
    }
}
