"""Model presets: the published `moebius-0.22b`, the same architecture at toy size (`moebius-tiny`), and
`moebius-tiny-trained`, that toy trained here (edge train), whose weights ship in edge/models/trained/.

A preset may name a `base` whose entries it overrides, and `weights`: files inside this package that are
its default weights (a UNet checkpoint, a VAE folder); without them a preset's default is random weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edge.errors import EdgeError
from edge.models.unet import UNetConfig

VAE_BLOCKS = 4  # SD-style VAE: 4 encoder and 4 decoder stages, downsampling 8x


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int  # the only spatial size the checkpoint supports (rel-pos embeddings fix it)
    latent_downsample: int
    unet: UNetConfig
    vae: dict  # keyword arguments of diffusers.AutoencoderKL
    unet_weights: Path | None = None  # default weights shipped with edge; None: seeded random
    vae_weights: Path | None = None

    @property
    def latent_size(self) -> int:
        return self.image_size // self.latent_downsample


def _read_presets() -> dict[str, Preset]:
    package = resources.files("edge.models")
    raw = json.loads(package.joinpath("presets.json").read_text())
    presets = {}
    for name, entry in raw.items():
        if "base" in entry:
            base = raw[entry["base"]]
            entry = {**base, **entry, "unet": {**base["unet"], **entry.get("unet", {})},
                     "vae": {**base["vae"], **entry.get("vae", {})}}
        latent_size = entry["image_size"] // entry["latent_downsample"]
        unet = UNetConfig(**{**entry["unet"], "block_out_channels": tuple(entry["unet"]["block_out_channels"])},
                          latent_size=latent_size)
        vae = dict(entry["vae"], in_channels=3, out_channels=3, act_fn="silu",
                   down_block_types=["DownEncoderBlock2D"] * VAE_BLOCKS,
                   up_block_types=["UpDecoderBlock2D"] * VAE_BLOCKS)
        shipped = {part: Path(str(package.joinpath(path))) for part, path in entry.get("weights", {}).items()}
        presets[name] = Preset(name, entry["image_size"], entry["latent_downsample"], unet, vae,
                               shipped.get("unet"), shipped.get("vae"))
    return presets


def preset_names() -> list[str]:
    return list(_read_presets())


def get_preset(name: str) -> Preset:
    presets = _read_presets()
    if name not in presets:
        raise EdgeError(f"unknown model '{name}': choose one of {', '.join(presets)}")
    return presets[name]
