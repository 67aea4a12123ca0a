"""`edge inpaint` end to end on moebius-tiny, and its answers to bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from edge.cli import app
from edge.pipeline.loop import PASTE_BLUR_RADIUS
from tests.helpers import REPO

runner = CliRunner()


@pytest.fixture(scope="module")
def odd_pair(tmp_path_factory):
    """A 301x197 crop of a real photograph and a box mask: non-square, odd-sized."""
    folder = tmp_path_factory.mktemp("pair")
    photo = Image.open(REPO / "calib_data" / "images" / "chelsea.png").convert("RGB").crop((40, 30, 341, 227))
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rectangle([120, 60, 190, 130], fill=255)
    photo.save(folder / "photo.png")
    mask.save(folder / "mask.png")
    return folder / "photo.png", folder / "mask.png", np.asarray(photo), np.asarray(mask) > 0


def inpaint(*args, weights=True, **files):
    extra = ["--model", "moebius-tiny"]
    if weights:
        extra += ["--weights", str(files["parity_file"]), "--vae", str(files["pipeline_file"])]
    return runner.invoke(app, ["inpaint", *map(str, args), *extra])


def test_inpaint_keeps_unmasked_pixels_and_fills_the_hole(tmp_path, odd_pair, parity_file, pipeline_file):
    photo_path, mask_path, photo, hole = odd_pair
    out = tmp_path / "out.png"
    result = inpaint(photo_path, mask_path, "-o", out, "--json", parity_file=parity_file, pipeline_file=pipeline_file)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["schema"] == 1 and summary["steps"] == 19 and summary["size"] == [301, 197]
    filled = np.asarray(Image.open(out).convert("RGB"))
    assert filled.shape == photo.shape
    # the blurred seam: PIL's Gaussian blur is three box passes, support < 3 * radius + 3 pixels
    seam = 3 * PASTE_BLUR_RADIUS + 3
    ys, xs = np.nonzero(hole)
    far = np.ones_like(hole)
    far[max(ys.min() - seam, 0): ys.max() + seam + 1, max(xs.min() - seam, 0): xs.max() + seam + 1] = False
    assert np.array_equal(filled[far], photo[far])
    assert np.abs(filled[hole].astype(int) - photo[hole].astype(int)).mean() > 5


def test_random_weights_are_said_loudly(tmp_path, odd_pair):
    photo_path, mask_path, _, _ = odd_pair
    result = inpaint(photo_path, mask_path, "-o", tmp_path / "r.png", "--json", weights=False)
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.stderr
    assert json.loads(result.stdout)["unet_weights"] == {"source": "random", "sha256": None, "seed": 0}


@pytest.mark.parametrize("case", ["missing_image", "not_an_image", "mask_size", "empty_mask", "bad_output",
                                  "unknown_model", "bad_weights", "output_is_input", "jpeg_output", "unwritable_output",
                                  "nan_guidance", "infinite_noise_offset"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, odd_pair, case):
    photo_path, mask_path, _, _ = odd_pair
    out = tmp_path / "out.png"
    args = [photo_path, mask_path, "-o", out]
    extra, expected = [], None
    if case == "missing_image":
        args[0], expected = tmp_path / "absent.png", "absent.png: no such image file"
    elif case == "not_an_image":
        bogus = tmp_path / "bogus.png"
        bogus.write_text("not a picture")
        args[0], expected = bogus, "bogus.png: not a readable image"
    elif case == "mask_size":
        small = tmp_path / "small.png"
        Image.new("L", (10, 10), 255).save(small)
        args[1], expected = small, "small.png: mask is 10x10 but the image is 301x197"
    elif case == "empty_mask":
        empty = tmp_path / "empty.png"
        Image.new("L", (301, 197), 0).save(empty)
        args[1], expected = empty, "empty.png: mask is empty"
    elif case == "bad_output":
        out = tmp_path / "missing-folder" / "out.png"
        args[3], expected = out, "does not exist"
    elif case == "unknown_model":
        extra, expected = ["--model", "moebius-huge"], "unknown model 'moebius-huge'"
    elif case == "output_is_input":
        out = tmp_path / "mask.png"
        out.write_bytes(mask_path.read_bytes())
        args[1] = args[3] = out
        expected = "mask.png: is also an input"
    elif case == "jpeg_output":
        out = tmp_path / "out.jpg"
        args[3], expected = out, "out.jpg: JPEG re-encodes every pixel"
    elif case == "unwritable_output":
        args[3], expected = "/proc/out.png", "/proc/out.png: cannot write in /proc"
    elif case == "nan_guidance":
        extra, expected = ["--guidance", "nan"], "--guidance nan: must be a finite number in 0..30"
    elif case == "infinite_noise_offset":
        extra, expected = ["--noise-offset", "inf"], "--noise-offset inf: must be a finite number in 0..1"
    else:
        bad = tmp_path / "weights.bin"
        bad.write_bytes(b"\x00" * 64)
        extra, expected = ["--weights", str(bad)], "weights.bin: not a checkpoint"
    result = runner.invoke(app, ["inpaint", *map(str, args), "--model", "moebius-tiny", *extra])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() or case == "output_is_input" and out.read_bytes() == mask_path.read_bytes()
    assert not list(tmp_path.rglob(".out.*")) and not list(tmp_path.rglob(".mask.png*"))  # no temporary left behind


@pytest.mark.parametrize("option, expected", [
    (["--steps", "1"], "error: Invalid value for '--steps': Input should be greater than or equal to 2"),
    (["--seed", str(2**64)], "error: Invalid value for '--seed': Input should be less than or equal to 9223372036854775807"),
    (["--sed", "1"], "error: No such option: --sed"),
])
def test_bad_options_are_one_line_too(tmp_path, odd_pair, option, expected):
    """Option parsing errors (raised before edge's code runs) get the same one `error:` line from `edge`'s main."""
    photo_path, mask_path, _, _ = odd_pair
    command = [sys.executable, "-c", "from edge.cli import main; main()", "inpaint", str(photo_path), str(mask_path),
               "-o", str(tmp_path / "out.png"), *option]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and not result.stdout
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(expected), result.stderr
