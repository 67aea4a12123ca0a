"""Building the models: the Moebius UNet and the SD-style VAE, from checkpoints or seeded random weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from edge.errors import EdgeError
from edge.files import read_json
from edge.models.presets import Preset, get_preset, preset_names
from edge.models.unet import MoebiusUNet, cfg_input_ids, timestep_features
from edge.models.weights import file_sha256, load_into, read_state_dict, resolve_checkpoint, select_prefixed

__all__ = ["MoebiusUNet", "Preset", "WeightsIdentity", "cfg_input_ids", "default_weights", "get_preset", "load_unet",
           "load_vae", "preset_names", "timestep_features", "weights_identity"]

DEFAULT_SEED = 0


@dataclass(frozen=True)
class WeightsIdentity:
    """What weights a model carries: a file's sha256, or the seed of random ones."""

    source: str  # the path given, or "random"
    sha256: str | None
    seed: int | None

    @property
    def is_random(self) -> bool:
        return self.sha256 is None

    def describe(self) -> str:
        return f"random seed {self.seed}" if self.is_random else f"{self.source} (sha256 {self.sha256[:12]})"

    def to_json(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "seed": self.seed}


def weights_identity(weights: Path | None, seed: int = DEFAULT_SEED) -> WeightsIdentity:
    if weights is None:
        return WeightsIdentity("random", None, seed)
    return WeightsIdentity(str(weights), file_sha256(resolve_checkpoint(Path(weights))), None)


def default_weights(preset: Preset, weights: Path | None, vae: Path | None) -> tuple[Path | None, Path | None]:
    """(UNet, VAE) weights: those given, else the preset's shipped ones; None stands for seeded random weights."""
    return (weights if weights is not None else preset.unet_weights,
            vae if vae is not None else preset.vae_weights)


def load_unet(preset: str | Preset, weights: Path | str | None = None, seed: int = DEFAULT_SEED) -> MoebiusUNet:
    """The Moebius UNet in eval mode: published weights (.bin, .safetensors or folder), else the preset's shipped
    ones, else seeded random ones."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    weights = weights if weights is not None else preset.unet_weights
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = MoebiusUNet(preset.unet)
    if weights is not None:
        state = select_prefixed(read_state_dict(Path(weights)), "state_dict.")
        load_into(unet, state, Path(weights), f"{preset.name} UNet")
    return unet.eval().requires_grad_(False)


def load_vae(preset: str | Preset, weights: Path | str | None = None, seed: int = DEFAULT_SEED) -> AutoencoderKL:
    """The VAE in eval mode: a diffusers folder (config.json + weights) or a state-dict file, else the preset's
    shipped one, else seeded random."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    weights = weights if weights is not None else preset.vae_weights
    config = preset.vae
    if weights is not None and Path(weights).is_dir():
        config_file = Path(weights) / "config.json"
        if not config_file.is_file():
            raise EdgeError(f"{weights}: not a diffusers VAE folder (no config.json)")
        config = read_json(config_file)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            vae = AutoencoderKL.from_config(config)
        except (TypeError, ValueError) as err:
            raise EdgeError(f"{weights}: VAE config not understood ({err})") from err
    if weights is not None:
        state = select_prefixed(read_state_dict(Path(weights)), "vae.")
        load_into(vae, state, Path(weights), "VAE")
    if vae.config.latent_channels != preset.unet.out_channels:
        raise EdgeError(f"{weights}: VAE has {vae.config.latent_channels} latent channels, "
                        f"the UNet expects {preset.unet.out_channels}")
    return vae.eval().requires_grad_(False)
