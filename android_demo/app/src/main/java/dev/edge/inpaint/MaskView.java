package dev.edge.inpaint;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Color;
import android.graphics.Matrix;
import android.graphics.Paint;
import android.graphics.PorterDuff;
import android.graphics.PorterDuffColorFilter;
import android.graphics.RectF;
import android.util.AttributeSet;
import android.view.MotionEvent;
import android.view.View;

/**
 * The photo, fitted to the view, with a mask painted on it by finger: white strokes on a transparent layer of the
 * photo's own size (MaskRule reads white as fill), shown as a translucent red.
 */
public final class MaskView extends View {
    private static final float BRUSH_FRACTION = 0.05f;  // of the photo's short side

    private final Paint brush = new Paint(Paint.ANTI_ALIAS_FLAG);
    private final Paint overlay = new Paint();
    private final Matrix toView = new Matrix();
    private final Matrix toPhoto = new Matrix();
    private Bitmap photo;
    private Bitmap mask;
    private Canvas maskCanvas;
    private boolean painting = true;
    private float lastX;
    private float lastY;

    public MaskView(Context context, AttributeSet attributes) {
        super(context, attributes);
        brush.setColor(Color.WHITE);
        brush.setStyle(Paint.Style.STROKE);
        brush.setStrokeCap(Paint.Cap.ROUND);
        brush.setStrokeJoin(Paint.Join.ROUND);
        overlay.setColorFilter(new PorterDuffColorFilter(Color.RED, PorterDuff.Mode.SRC_IN));
        overlay.setAlpha(140);
    }

    /** A new photo and an empty mask of its size. */
    public void setPhoto(Bitmap newPhoto) {
        photo = newPhoto;
        mask = Bitmap.createBitmap(photo.getWidth(), photo.getHeight(), Bitmap.Config.ARGB_8888);
        maskCanvas = new Canvas(mask);
        brush.setStrokeWidth(BRUSH_FRACTION * Math.min(photo.getWidth(), photo.getHeight()));
        requestLayout();
        invalidate();
    }

    public boolean hasPhoto() {
        return photo != null;
    }

    public Bitmap photo() {
        return photo;
    }

    public void clearMask() {
        if (mask != null) {
            mask.eraseColor(Color.TRANSPARENT);
            invalidate();
        }
    }

    /** The mask at the photo's size, as Bitmap.getPixels gives it. */
    public int[] maskPixels() {
        return Pictures.pixels(mask);
    }

    /** Off while the photo is being inpainted. */
    public void setPainting(boolean enabled) {
        painting = enabled;
    }

    @Override
    protected void onDraw(Canvas canvas) {
        super.onDraw(canvas);
        if (photo == null) {
            return;
        }
        toView.setRectToRect(new RectF(0, 0, photo.getWidth(), photo.getHeight()),
                new RectF(0, 0, getWidth(), getHeight()), Matrix.ScaleToFit.CENTER);
        toView.invert(toPhoto);
        canvas.drawBitmap(photo, toView, null);
        canvas.drawBitmap(mask, toView, overlay);
    }

    @Override
    public boolean onTouchEvent(MotionEvent event) {
        if (photo == null || !painting) {
            return false;
        }
        float[] point = {event.getX(), event.getY()};
        toPhoto.mapPoints(point);
        switch (event.getActionMasked()) {
            case MotionEvent.ACTION_DOWN:
                maskCanvas.drawPoint(point[0], point[1], brush);
                break;
            case MotionEvent.ACTION_MOVE:
                maskCanvas.drawLine(lastX, lastY, point[0], point[1], brush);
                break;
            case MotionEvent.ACTION_UP:
                performClick();
                break;
            default:
                return true;
        }
        lastX = point[0];
        lastY = point[1];
        invalidate();
        return true;
    }

    @Override
    public boolean performClick() {
        return super.performClick();
    }
}
