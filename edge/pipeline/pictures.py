"""Pictures in and out: read as a photo editor shows them, written without touching what the mask keeps.

Reading (`open_picture`): EXIF orientation applied; 16-bit greyscale scaled to 8 bits (not clipped); palette,
greyscale and CMYK pictures converted by Pillow; a picture over Pillow's decompression-bomb limit (179
megapixels) refused with its size. The mask rule (`binary_mask`): white (luminance >= 128) = fill, black =
keep; a mask with an alpha channel whose colour channels are flat (one colour: a stroke painted on a
transparent layer) is read from its alpha instead, opaque (>= 128) = fill. Writing (`save_picture`): PNG, BMP and WebP (saved lossless) keep every
pixel outside the blurred mask exactly; JPEG re-encodes every pixel, so it is refused as an output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge.errors import EdgeError

OUTPUT_SUFFIXES = (".png", ".webp", ".bmp")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def open_picture(path, what: str = "image") -> Image.Image:
    """A picture file, fully read and upright, in 8-bit channels; EdgeError naming the file on any problem."""
    try:
        with Image.open(path) as picture:
            picture.load()
            upright = ImageOps.exif_transpose(picture)
    except FileNotFoundError as err:
        raise EdgeError(f"{path}: no such {what} file") from err
    except Image.DecompressionBombError as err:  # over 2 x Image.MAX_IMAGE_PIXELS: 179 megapixels
        raise EdgeError(f"{path}: too large to open safely ({err}); downscale it first") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:  # Pillow's decoders raise all of these
        raise EdgeError(f"{path}: not a readable image ({err.__class__.__name__})") from err
    if upright.mode in SIXTEEN_BIT_MODES:  # 16-bit greyscale: 0..65535 -> 0..255 (Pillow's convert would clip)
        values = np.asarray(upright.convert("I"), dtype=np.float64)
        return Image.fromarray(np.rint(values.clip(0, 65535) / 257).astype(np.uint8), mode="L")
    return upright


def binary_mask(mask: Image.Image) -> Image.Image:
    """0/255 "L" mask by the rule above (255 = fill)."""
    if mask.mode in ("RGBA", "LA", "PA") or mask.mode == "P" and "transparency" in mask.info:
        rgba = mask.convert("RGBA")
        if all(low == high for low, high in rgba.getextrema()[:3]):  # flat colour: the alpha is the drawing
            return rgba.getchannel("A").point(lambda v: 255 if v >= 128 else 0)
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def prepare_pair(image: Image.Image, mask: Image.Image, mask_source: object = "mask") -> tuple[Image.Image, Image.Image]:
    """RGB image and 0/255 mask (the mask rule above), checked to match and to have something to fill.

    mask_source names the mask (its file) in the error messages.
    """
    if image.size != mask.size:
        raise EdgeError(f"{mask_source}: mask is {mask.size[0]}x{mask.size[1]} "
                        f"but the image is {image.size[0]}x{image.size[1]}")
    fill = binary_mask(mask)
    if not fill.getbbox():
        raise EdgeError(f"{mask_source}: mask is empty: nothing to fill (white = fill, black = keep)")
    return image.convert("RGB"), fill


def check_output_path(out: Path, inputs: tuple[Path, ...]) -> None:
    """Before any work: a format that keeps the unmasked pixels, not one of the inputs."""
    suffix = out.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        raise EdgeError(f"{out}: JPEG re-encodes every pixel, so the pixels outside the mask would change; "
                        f"write {', '.join(OUTPUT_SUFFIXES)} (WebP is saved lossless) and convert afterwards")
    if suffix not in OUTPUT_SUFFIXES:
        raise EdgeError(f"{out}: unsupported output format '{out.suffix}' (use {', '.join(OUTPUT_SUFFIXES)})")
    for given in inputs:
        if out.resolve() == Path(given).resolve():
            raise EdgeError(f"{out}: is also an input; choose another output path")


def save_picture(picture: Image.Image, path: str | Path) -> None:
    """PNG/BMP as Pillow writes them; WebP lossless with exact RGB (the unmasked pixels stay the input's)."""
    if Path(path).suffix.lower() == ".webp":
        picture.save(path, format="WEBP", lossless=True, exact=True)
    else:
        picture.save(path, format={".png": "PNG", ".bmp": "BMP"}[Path(path).suffix.lower()])
