"""The three graphs an app runs: VAE encoder, UNet, VAE decoder, as export-ready modules.

  build_graphs(preset, unet, vae)          -> {name: GraphSpec}    (the fp32 modules, names, shapes)
  prepare_graph(spec, rewrites, inputs)    -> PreparedGraph         (BatchNorms folded, a target's rewrites)

Each graph module has only float inputs and outputs at static shapes, and everything an app would
otherwise have to rebuild (the fixed classifier-free-guidance conditioning, the VAE scaling factor,
the [-1, 1] -> [0, 1] mapping of the decoded image) is folded into it. The timestep enters the UNet as
its fp32 sinusoidal features (one row per sampling step, shipped with the bundle), never as an int.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from edge.compile.rewrites import REWRITES
from edge.errors import EdgeError
from edge.models import MoebiusUNet, Preset, cfg_input_ids

GRAPH_NAMES = ("encoder", "unet", "decoder")  # the order an app runs them in, and the bundle lists them


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def example(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(self.shape, generator=generator)

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """A copy of `module` with each eval-mode BatchNorm folded into the conv or linear that feeds it.

    Modules declare their foldable pairs as `batch_norm_pairs = ((producer, norm), ...)`; the norm
    becomes an Identity. Saves two graph nodes per BatchNorm on every target.
    """
    module = copy.deepcopy(module)
    for owner in module.modules():
        for producer_name, norm_name in getattr(owner, "batch_norm_pairs", ()):
            producer, norm = getattr(owner, producer_name), getattr(owner, norm_name)
            fuse = fuse_conv_bn_eval if isinstance(producer, nn.Conv2d) else fuse_linear_bn_eval
            setattr(owner, producer_name, fuse(producer, norm))
            setattr(owner, norm_name, nn.Identity())
    return module


class EncoderGraph(nn.Module):
    """image (B, 3, H, W) in [-1, 1] -> scaled mean latent (B, 4, H/8, W/8)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.encoder, self.quant_conv = vae.encoder, vae.quant_conv
        self.scaling_factor = float(vae.config.scaling_factor)
        self.latent_channels = int(vae.config.latent_channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        moments = self.quant_conv(self.encoder(image))  # (B, 2*4, h, w): mean | log-variance
        return moments[:, : self.latent_channels] * self.scaling_factor


class UNetGraph(nn.Module):
    """(latent (2, 9, h, w), time_features (1, F)) -> noise (2, 4, h, w), batch = [uncond, cond].

    The 20-row embedding table and its projection are evaluated once here: the graph carries the two
    fixed 10-token conditionings as a constant, so an app never builds int64 ids.
    """

    def __init__(self, unet: MoebiusUNet):
        super().__init__()
        self.denoiser = unet.diff_model
        with torch.no_grad():
            self.register_buffer("context", unet.condition_tokens(cfg_input_ids(1)))  # (2, 10, D)

    def forward(self, latent: torch.Tensor, time_features: torch.Tensor) -> torch.Tensor:
        return self.denoiser(latent, time_features, self.context)


class DecoderGraph(nn.Module):
    """scaled latent (B, 4, h, w) -> image (B, 3, H, W) in [0, 1]."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.post_quant_conv, self.decoder = vae.post_quant_conv, vae.decoder
        self.scaling_factor = float(vae.config.scaling_factor)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        image = self.decoder(self.post_quant_conv(latent / self.scaling_factor))
        return ((image + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class GraphSpec:
    """One graph: its module and the names, shapes and dtypes of its inputs and outputs."""

    name: str
    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def example_inputs(self, seed: int = 0) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        return tuple(spec.example(generator) for spec in self.inputs)

    def export(self) -> torch.export.ExportedProgram:
        """torch.export at the static shapes, BatchNorms folded first (the module itself is untouched)."""
        return torch.export.export(fold_batch_norms(self.module), self.example_inputs(), strict=False)


def build_graphs(preset: Preset, unet: MoebiusUNet, vae: AutoencoderKL) -> dict[str, GraphSpec]:
    """The three graphs at the preset's static size: encoder and decoder at batch 1, UNet at CFG batch 2."""
    size, latent = preset.image_size, preset.latent_size
    channels = preset.unet.out_channels
    return {
        "encoder": GraphSpec("encoder", EncoderGraph(vae),
                             (TensorSpec("image", (1, 3, size, size)),),
                             (TensorSpec("latent", (1, channels, latent, latent)),)),
        "unet": GraphSpec("unet", UNetGraph(unet),
                          (TensorSpec("latent", (2, preset.unet.in_channels, latent, latent)),
                           TensorSpec("time_features", (1, preset.unet.time_features))),
                          (TensorSpec("noise", (2, channels, latent, latent)),)),
        "decoder": GraphSpec("decoder", DecoderGraph(vae),
                             (TensorSpec("latent", (1, channels, latent, latent)),),
                             (TensorSpec("image", (1, 3, size, size)),)),
    }


@dataclass(frozen=True)
class PreparedGraph:
    """A graph as a backend lowers it: BatchNorms folded, the target's rewrites applied, example inputs."""

    name: str
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def prepare_graph(spec: GraphSpec, rewrites: tuple[str, ...], example_inputs: tuple[torch.Tensor, ...]) -> PreparedGraph:
    unknown = [r for r in rewrites if r not in REWRITES]
    if unknown:
        raise EdgeError(f"unknown rewrite {', '.join(unknown)}: known are {', '.join(REWRITES)}")
    module = fold_batch_norms(spec.module)
    for rewrite in rewrites:
        module = REWRITES[rewrite](module)
    return PreparedGraph(spec.name, module.eval(), example_inputs, spec.inputs, spec.outputs)
