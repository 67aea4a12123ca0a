package dev.edge.inpaint;

import android.content.ContentResolver;
import android.graphics.Bitmap;
import android.graphics.ImageDecoder;
import android.net.Uri;
import dev.edge.core.Picture;
import java.io.IOException;

/** Bitmaps to and from core's Picture (packed ARGB ints, as Bitmap.getPixels gives them). */
final class Pictures {
    /** A photo larger than this on its long side is decoded scaled down, so the loop's copies fit in memory. */
    static final int MAX_SIDE = 2048;

    private Pictures() {
    }

    /** The picked photo, upright (ImageDecoder applies its EXIF orientation), in memory the app can read. */
    static Bitmap decode(ContentResolver resolver, Uri uri) throws IOException {
        ImageDecoder.Source source = ImageDecoder.createSource(resolver, uri);
        return ImageDecoder.decodeBitmap(source, (decoder, info, unused) -> {
            decoder.setAllocator(ImageDecoder.ALLOCATOR_SOFTWARE);
            int width = info.getSize().getWidth();
            int height = info.getSize().getHeight();
            int longSide = Math.max(width, height);
            if (longSide > MAX_SIDE) {
                decoder.setTargetSize(Math.max(1, width * MAX_SIDE / longSide), Math.max(1, height * MAX_SIDE / longSide));
            }
        });
    }

    static int[] pixels(Bitmap bitmap) {
        int[] argb = new int[bitmap.getWidth() * bitmap.getHeight()];
        bitmap.getPixels(argb, 0, bitmap.getWidth(), 0, 0, bitmap.getWidth(), bitmap.getHeight());
        return argb;
    }

    static Picture toPicture(Bitmap bitmap) {
        return new Picture(bitmap.getWidth(), bitmap.getHeight(), pixels(bitmap));
    }

    static Bitmap toBitmap(Picture picture) {
        return Bitmap.createBitmap(picture.argb(), picture.width, picture.height, Bitmap.Config.ARGB_8888);
    }
}
