"""The reference inpainting pipeline: preprocess, VAE encode, DDIM + CFG over the UNet, decode, paste back.

The loop runs over the `InpaintGraphs` protocol (the three graphs an app runs), so every compiled
target plugs into the same code: `TorchGraphs` is the fp32 torch reference; backends add their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from edge.models.unet import timestep_features
from edge.pipeline.pictures import prepare_pair
from edge.pipeline.schedule import DDIMSchedule
from edge.pipeline.step import guided_noise, unet_input

if TYPE_CHECKING:
    from edge.compile.graphs import GraphSpec

PASTE_BLUR_RADIUS = 3  # Gaussian blur of the mask used to blend the result into the original
NOISE_OFFSET = 0.0357  # published inference adds noise_offset * randn(B, 4, 1, 1) to the start noise


class InpaintGraphs(Protocol):
    """The three graphs, in the calling convention of `edge.compile.graphs` (and of an app)."""

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, S, S) in [-1, 1] -> (1, 4, s, s) scaled latent."""

    def denoise(self, latent: torch.Tensor, time_features: torch.Tensor) -> torch.Tensor:
        """(2, 9, s, s) [uncond, cond], (1, F) -> (2, 4, s, s) predicted noise."""

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(1, 4, s, s) scaled latent -> (1, 3, S, S) in [0, 1]."""


class CallableGraphs:
    """InpaintGraphs from three callables (torch modules, loaded programs), run without autograd."""

    def __init__(self, encoder: Callable, unet: Callable, decoder: Callable):
        self.encoder, self.unet, self.decoder = encoder, unet, decoder

    @torch.no_grad()
    def encode(self, image):
        return self.encoder(image)

    @torch.no_grad()
    def denoise(self, latent, time_features):
        return self.unet(latent, time_features)

    @torch.no_grad()
    def decode(self, latent):
        return self.decoder(latent)


class TorchGraphs(CallableGraphs):
    """The fp32 torch reference: the graph modules, run eagerly."""

    def __init__(self, graphs: dict[str, GraphSpec]):
        super().__init__(*(graphs[name].module for name in ("encoder", "unet", "decoder")))


@dataclass
class InpaintResult:
    image01: torch.Tensor  # (1, 3, S, S) in [0, 1], before paste-back
    latents: torch.Tensor  # (1, 4, s, s) final scaled latents
    trace: dict[str, torch.Tensor] = field(default_factory=dict)


def start_noise(latent_shape: tuple[int, ...], seed: int, noise_offset: float = NOISE_OFFSET) -> torch.Tensor:
    """Seeded start noise, with the published optional per-channel offset."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latent_shape, generator=generator)
    if noise_offset:
        noise = noise + noise_offset * torch.randn((*latent_shape[:2], 1, 1), generator=generator)
    return noise


@dataclass(frozen=True)
class SamplingPlan:
    """The numbers the loop runs on: schedule, guidance, and one fp32 timestep-feature row per step."""

    schedule: DDIMSchedule
    guidance: float
    time_features: torch.Tensor  # (steps, F)


def sampling_plan(time_feature_dim: int, schedule: DDIMSchedule, guidance: float) -> SamplingPlan:
    return SamplingPlan(schedule, guidance, timestep_features(torch.tensor(schedule.timesteps), time_feature_dim))


def inpaint_tensors(graphs: InpaintGraphs, plan: SamplingPlan, image: torch.Tensor, mask: torch.Tensor,
                    noise: torch.Tensor, on_step: Callable[[int, int], None] | None = None) -> InpaintResult:
    """The sampling loop at model size. image (1,3,S,S) in [-1,1]; mask (1,1,S,S), 1 = fill."""
    schedule = plan.schedule
    mask = (mask >= 0.5).to(image.dtype)
    latents = graphs.encode(image)
    masked_latents = graphs.encode(image * (1 - mask))
    mask_latent = F.interpolate(mask, size=latents.shape[-2:], mode="nearest")  # (1, 1, s, s)
    known = torch.cat([mask_latent, masked_latents], dim=1)  # (1, 5, s, s): what every step sees
    x = schedule.add_noise(latents, noise)
    trace = {"latents": latents, "masked_latents": masked_latents, "mask_latent": mask_latent, "noisy_start": x}
    for i in range(schedule.steps):
        noise = graphs.denoise(unet_input(x, known), plan.time_features[i : i + 1])  # (2, 4, s, s)
        x = schedule.step(i, x, guided_noise(noise, plan.guidance))
        if on_step is not None:
            on_step(i + 1, schedule.steps)
    return InpaintResult(graphs.decode(x), x, trace)


def inpaint_image(graphs: InpaintGraphs, plan: SamplingPlan, image_size: int, image: Image.Image,
                  mask: Image.Image, seed: int, noise_offset: float = NOISE_OFFSET,
                  on_step: Callable[[int, int], None] | None = None) -> Image.Image:
    """Inpaint a picture of any size: resize to the model's square size, sample, resize back, paste.

    The model runs at one fixed size (its relative-position embeddings fix it), so the picture is
    resized (not letterboxed) to image_size x image_size and the result resized back; pixels outside
    the blurred mask are copied from the input unchanged.
    """
    image, binary_mask = prepare_pair(image, mask)
    image_t, mask_t = model_inputs(image, binary_mask, image_size)
    latent_side = image_size // 8
    noise = start_noise((1, 4, latent_side, latent_side), seed, noise_offset)
    result = inpaint_tensors(graphs, plan, image_t, mask_t, noise, on_step)
    return paste_back(to_image(result.image01).resize(image.size, Image.Resampling.LANCZOS), image, binary_mask)


def model_inputs(image: Image.Image, binary_mask: Image.Image, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepared pair -> image (1, 3, S, S) in [-1, 1] and mask (1, 1, S, S) in [0, 1] at the model's size."""
    square = (image_size, image_size)
    image_t = to_tensor(image.resize(square, Image.Resampling.LANCZOS)) * 2 - 1
    mask_t = to_tensor(binary_mask.resize(square, Image.Resampling.LANCZOS))
    return image_t, mask_t


def paste_back(result: Image.Image, original: Image.Image, binary_mask: Image.Image) -> Image.Image:
    """result * blur(mask) + original * (1 - blur(mask)); exact copies of the original where blur = 0."""
    weight = paste_weight(binary_mask)[..., None]  # (H, W, 1)
    blended = np.asarray(result, dtype=np.float64) * weight + np.asarray(original, dtype=np.float64) * (1 - weight)
    return Image.fromarray(np.rint(blended).astype(np.uint8))


def paste_weight(binary_mask: Image.Image) -> np.ndarray:
    """(H, W) float64 in [0, 1]: how much of the model's result a pixel takes; 0 = the input's pixel, unchanged."""
    return np.asarray(binary_mask.filter(ImageFilter.GaussianBlur(PASTE_BLUR_RADIUS)), dtype=np.float64) / 255


def to_tensor(picture: Image.Image) -> torch.Tensor:
    """PIL RGB or L -> (1, C, H, W) float32 in [0, 1]."""
    array = np.asarray(picture, dtype=np.float32) / 255
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(image01: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) in [0, 1] -> PIL RGB."""
    array = (image01[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array)
