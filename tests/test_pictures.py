"""Pictures are read as a photo editor shows them and written without touching what the mask keeps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge.errors import EdgeError
from edge.pipeline.pictures import binary_mask, check_output_path, open_picture, prepare_pair, save_picture
from tests.helpers import REPO

PHOTO = REPO / "eval_data" / "images" / "flower.png"


def test_exif_orientation_is_applied(tmp_path):
    """A phone's portrait photo: landscape pixels plus EXIF orientation 6 (rotate 90 degrees clockwise to show)."""
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 20))  # red on the stored picture's left: on top once shown upright
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "portrait.jpg", exif=exif, quality=100)
    shown = open_picture(tmp_path / "portrait.jpg")
    assert shown.size == (20, 40)
    assert shown.getpixel((10, 2))[0] > 200 and shown.getpixel((10, 37))[2] > 200


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 16).astype(np.uint16).reshape(16, 64)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    picture = open_picture(tmp_path / "ramp16.png")
    assert picture.mode == "L"
    assert np.abs(np.asarray(picture, dtype=int) - np.rint(ramp / 257)).max() == 0
    assert (np.asarray(picture) == 255).mean() < 0.01  # pillow's own convert makes 99% of this white


@pytest.mark.parametrize("mode", ["P", "CMYK", "LA", "I;16"])
def test_other_modes_become_rgb_of_the_same_picture(tmp_path, mode):
    photo = Image.open(PHOTO).convert("RGB").resize((64, 64))
    grey = photo.convert("L")
    converted = {"LA": grey.convert("LA"), "I;16": Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)}.get(mode)
    converted = converted or photo.convert(mode)
    converted.save(tmp_path / f"photo.{'tif' if mode == 'CMYK' else 'png'}")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (10, 10, 20, 20))
    image, _ = prepare_pair(open_picture(next(tmp_path.iterdir())), mask)
    reference = photo.convert("L") if mode in ("LA", "I;16") else photo
    error = np.abs(np.asarray(image.convert(reference.mode), dtype=int) - np.asarray(reference, dtype=int)).mean()
    assert image.mode == "RGB" and error < {"P": 16, "CMYK": 12}.get(mode, 1.5)  # P: the 216-colour web palette


def test_mask_alpha_is_the_drawing_when_its_colour_is_flat():
    """A stroke painted on a transparent layer: the colour is the same everywhere, the alpha says where."""
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    layer.paste((0, 0, 0, 255), (4, 4, 12, 12))
    fill = np.asarray(binary_mask(layer)) > 0
    assert fill[4:12, 4:12].all() and fill.sum() == 64


def test_mask_with_alpha_and_colour_uses_the_colour():
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 255))
    layer.paste((255, 255, 255, 255), (4, 4, 12, 12))
    assert (np.asarray(binary_mask(layer)) > 0).sum() == 64


def test_decompression_bomb_is_one_error_with_its_size(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    with pytest.raises(EdgeError, match=r"bomb.png: too large to open safely \(Image size \(400000000 pixels\)"):
        open_picture(tmp_path / "bomb.png")


@pytest.mark.parametrize("name, expected", [("out.jpg", "JPEG re-encodes every pixel"), ("out.gif", "unsupported output format"),
                                            ("photo.png", "is also an input")])
def test_outputs_that_would_lose_pixels_are_refused(tmp_path, name, expected):
    with pytest.raises(EdgeError, match=expected):
        check_output_path(tmp_path / name, (tmp_path / "photo.png", tmp_path / "mask.png"))


@pytest.mark.parametrize("suffix", [".png", ".webp", ".bmp"])
def test_outputs_keep_every_pixel(tmp_path, suffix):
    photo = Image.open(PHOTO).convert("RGB")
    save_picture(photo, tmp_path / f"out{suffix}")
    assert np.array_equal(np.asarray(Image.open(tmp_path / f"out{suffix}").convert("RGB")), np.asarray(photo))
