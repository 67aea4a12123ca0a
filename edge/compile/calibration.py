"""Calibration data: image/mask pairs, and timestep-aware recordings of every graph's inputs.

The fp32 pipeline runs over each calibration pair and records what each graph sees: the encoder's
two inputs, the UNet's CFG-batch input at every one of the sampling steps (so int8 ranges cover
t = 900 as well as t = 0), and the decoder's input. Recordings are cached, keyed by the weights, the
calibration set, the model and the schedule.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load, save

from edge.cache import cache_dir, read_cached_bytes, write_cached_bytes
from edge.compile.graphs import GRAPH_NAMES
from edge.errors import EdgeError
from edge.pipeline.loop import (
    InpaintGraphs,
    SamplingPlan,
    inpaint_tensors,
    model_inputs,
    start_noise,
)
from edge.pipeline.masks import random_mask
from edge.pipeline.pictures import open_picture, prepare_pair

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_CALIB_DIR = Path(__file__).resolve().parents[2] / "calib_data"
HELD_OUT_EVERY = 4  # every 4th pair (sorted by name) is held out for evaluation, never calibrated on


@dataclass(frozen=True)
class ImagePair:
    name: str
    image: Path
    mask: Path | None  # None: a seeded mask is generated

    def pictures(self) -> tuple[Image.Image, Image.Image]:
        """(RGB picture, binary mask) at the picture's own size."""
        picture = open_picture(self.image)
        mask = open_picture(self.mask, "mask") if self.mask else random_mask(*picture.size, seed=zlib.crc32(self.name.encode()))
        return prepare_pair(picture, mask, self.mask or f"{self.image} (generated mask)")

    def load(self, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return model_inputs(*self.pictures(), image_size)


def find_pairs(folder: Path) -> list[ImagePair]:
    """Images in FOLDER (or FOLDER/images), masks of the same stem in FOLDER/masks when present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeError(f"{folder}: no such calibration folder")
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise EdgeError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this calibration folder")
    mask_dir = folder / "masks"
    return [ImagePair(p.stem, p, (mask_dir / f"{p.stem}.png") if (mask_dir / f"{p.stem}.png").is_file() else None)
            for p in images]


def split_pairs(pairs: list[ImagePair]) -> tuple[list[ImagePair], list[ImagePair]]:
    """(calibration, held-out evaluation). With fewer than HELD_OUT_EVERY pairs, all serve both."""
    held_out = [p for i, p in enumerate(pairs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    calibration = [p for p in pairs if p not in held_out]
    return (calibration, held_out) if calibration and held_out else (pairs, pairs)


def pairs_digest(pairs: list[ImagePair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        for path in (pair.image, pair.mask):
            digest.update(path.read_bytes() if path else b"generated-mask")
    return digest.hexdigest()


class RecordingGraphs:
    """Wraps an InpaintGraphs and keeps every input it is called with (and, with keep_outputs, every output)."""

    def __init__(self, graphs: InpaintGraphs, keep_outputs: bool = False):
        self.graphs = graphs
        self.keep_outputs = keep_outputs
        self.inputs: dict[str, list[tuple[torch.Tensor, ...]]] = {name: [] for name in GRAPH_NAMES}
        self.outputs: dict[str, list[torch.Tensor]] = {name: [] for name in GRAPH_NAMES}

    def _call(self, name: str, run: Callable, *inputs: torch.Tensor) -> torch.Tensor:
        self.inputs[name].append(inputs)
        output = run(*inputs)
        if self.keep_outputs:
            self.outputs[name].append(output)
        return output

    def encode(self, image):
        return self._call("encoder", self.graphs.encode, image)

    def denoise(self, latent, time_features):
        return self._call("unet", self.graphs.denoise, latent, time_features)

    def decode(self, latent):
        return self._call("decoder", self.graphs.decode, latent)


def record(graphs: InpaintGraphs, plan: SamplingPlan, pairs: list[ImagePair], image_size: int,
           on_pair: Callable[[int, int], None] | None = None) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    recorder = RecordingGraphs(graphs)
    latent_side = image_size // 8
    for index, pair in enumerate(pairs):
        image, mask = pair.load(image_size)
        inpaint_tensors(recorder, plan, image, mask, start_noise((1, 4, latent_side, latent_side), seed=index))
        if on_pair:
            on_pair(index + 1, len(pairs))
    return recorder.inputs


def cached_recordings(key: dict, produce: Callable[[], dict]) -> tuple[dict[str, list[tuple[torch.Tensor, ...]]], bool]:
    """(recordings, whether they came from the cache) for a JSON-able key. The entry is a checked cache file
    (edge.cache): a damaged one is recorded again and an unwritable cache skipped, each with a warning."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "calibration" / f"{digest}.safetensors"
    payload = read_cached_bytes(path)
    if payload is not None:
        return _unflatten(load(payload)), True
    recordings = produce()
    write_cached_bytes(path, save(_flatten(recordings), metadata={"key": json.dumps(key, sort_keys=True)}))
    return recordings, False


def _flatten(recordings: dict) -> dict[str, torch.Tensor]:
    return {f"{graph}.{i}.{j}": tensor.clone().contiguous() for graph, samples in recordings.items()
            for i, sample in enumerate(samples) for j, tensor in enumerate(sample)}


def _unflatten(flat: dict[str, torch.Tensor]) -> dict[str, list[tuple[torch.Tensor, ...]]]:
    grouped: dict[str, dict[int, dict[int, torch.Tensor]]] = {name: {} for name in GRAPH_NAMES}
    for key, tensor in flat.items():
        graph, i, j = key.split(".")
        grouped[graph].setdefault(int(i), {})[int(j)] = tensor
    return {graph: [tuple(sample[j] for j in sorted(sample)) for _, sample in sorted(samples.items())]
            for graph, samples in grouped.items()}
