"""`edge train`: photographs -> VAE -> encoded pairs -> UNet, in one resumable run folder.

  OUT/vae.state.pt, OUT/unet.state.pt   whole training state, saved every few steps (a rerun resumes)
  OUT/vae_loss.png, OUT/unet_loss.png   loss curves
  OUT/pairs.safetensors                 the UNet's training pairs, encoded once by the trained VAE
  OUT/weights/unet.safetensors          the EMA UNet
  OUT/weights/vae/                      the VAE as a diffusers folder, measured scaling_factor in config.json
  OUT/eval_data/                        the held-out photographs and their masks (committed as eval_data/)
  OUT/training.json                     plan, photographs (sha256, licence), losses, seconds
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edge.files import write_atomically, write_text_atomically
from edge.models import get_preset
from edge.train.crops import photo_tensors
from edge.train.latents import encode_pairs
from edge.train.photos import Photo, read_photos, write_eval_data
from edge.train.unet import UNetTraining, train_unet
from edge.train.vae import VAETraining, train_vae

PRESET = "moebius-tiny-trained"  # the architecture trained (its shipped weights are what this writes)
ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int, int], None]]]  # what -> on_step(done, total)


@dataclass(frozen=True)
class TrainingPlan:
    vae: VAETraining = field(default_factory=VAETraining)
    unet: UNetTraining = field(default_factory=UNetTraining)
    pairs: int = 4096  # 128 px crops, each with its own random mask
    pairs_seed: int = 2


def run_training(out: Path, wheels: Path, plan: TrainingPlan, progress: ProgressFactory, say: Callable[[str], None]) -> dict:
    """Runs (or resumes) every phase in `out`; returns what training.json records."""
    preset = get_preset(PRESET)
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    photos = read_photos(wheels)
    images = photo_tensors(photos)
    held_out = write_eval_data(wheels, out / "eval_data")
    say(f"{len(photos)} training photographs from {len({p.source.package for p in photos})} packages; "
        f"{len(held_out)} held out")

    started = time.perf_counter()
    with progress("VAE") as on_step:
        vae = train_vae(preset, images, plan.vae, out, on_step)
    weights = out / "weights"
    weights.mkdir(exist_ok=True)
    vae.save_pretrained(weights / "vae", safe_serialization=True)
    seconds["vae"] = time.perf_counter() - started
    say(f"VAE: scaling factor {vae.config.scaling_factor}")

    started = time.perf_counter()
    pairs_file = out / "pairs.safetensors"
    if pairs_file.is_file():
        pairs = load_file(pairs_file)
    else:
        with progress("encode pairs") as on_step:
            pairs = encode_pairs(vae, images, plan.pairs, preset.image_size, plan.pairs_seed, on_step)
        write_atomically(pairs_file, lambda tmp: save_file(pairs, tmp))
    seconds["pairs"] = time.perf_counter() - started

    started = time.perf_counter()
    with progress("UNet") as on_step:
        unet = train_unet(preset, pairs, plan.unet, out, on_step)
    write_atomically(weights / "unet.safetensors",
                     lambda tmp: save_file(unet.state_dict(), tmp, metadata={"preset": PRESET, "weights": "EMA"}))
    seconds["unet"] = time.perf_counter() - started

    record = {"preset": PRESET, "plan": asdict(plan), "threads": torch.get_num_threads(),
              "scaling_factor": vae.config.scaling_factor, "photos": [photo_record(p) for p in photos],
              "held_out": held_out,
              "losses": {name: final_losses(out / f"{name}.state.pt") for name in ("vae", "unet")},
              "seconds_this_run": {k: round(v) for k, v in seconds.items()}}
    write_text_atomically(out / "training.json", json.dumps(record, indent=1) + "\n")
    return record


def photo_record(photo: Photo) -> dict:
    return {"name": photo.name, "package": f"{photo.source.package}=={photo.source.version}",
            "licence": photo.source.licence, "size": list(photo.image.size),
            "sha256_of_pixels": hashlib.sha256(photo.image.tobytes()).hexdigest()[:16]}


def final_losses(state_file: Path) -> dict:
    """First and last running means of a run's losses (means of 50 steps)."""
    losses = torch.load(state_file, map_location="cpu", weights_only=True)["losses"]
    return {"steps": len(losses), "first_50": sum(losses[:50]) / len(losses[:50]),
            "last_50": sum(losses[-50:]) / len(losses[-50:])}
