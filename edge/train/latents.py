"""The UNet's training pairs, encoded once: random crops, each with a random mask, through the trained VAE.

What the pipeline feeds the UNet at every step, prepared the same way (edge/pipeline/loop.py): the
mask binarised at 0.5 (white = fill), masked image = image x (1 - mask), both VAE-encoded (posterior
mean) and scaled, the mask resized to latent size (nearest).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from edge.pipeline.masks import random_mask
from edge.train.crops import random_crops

ENCODE_CHUNK = 32


@torch.no_grad()
def encode_pairs(vae: AutoencoderKL, images: list[torch.Tensor], count: int, size: int, seed: int,
                 on_step: Callable[[int, int], None]) -> dict[str, torch.Tensor]:
    """latents (N,4,s,s), masked_latents (N,4,s,s) and mask_latent (N,1,s,s), N = count, s = size / 8."""
    generator = torch.Generator().manual_seed(seed)
    scale = vae.config.scaling_factor
    parts: dict[str, list[torch.Tensor]] = {"latents": [], "masked_latents": [], "mask_latent": []}
    for start in range(0, count, ENCODE_CHUNK):
        n = min(ENCODE_CHUNK, count - start)
        crops = random_crops(images, n, size, generator)  # (n, 3, S, S) in [-1, 1]
        masks = torch.stack([torch.from_numpy(np.array(random_mask(size, size, seed=seed * 1_000_003 + start + i)))
                             for i in range(n)])[:, None].float() / 255  # (n, 1, S, S)
        masks = (masks >= 0.5).float()
        latent_size = size // (2 ** (len(vae.config.block_out_channels) - 1))
        parts["latents"].append(vae.encode(crops).latent_dist.mean * scale)
        parts["masked_latents"].append(vae.encode(crops * (1 - masks)).latent_dist.mean * scale)
        parts["mask_latent"].append(F.interpolate(masks, size=(latent_size, latent_size), mode="nearest"))
        on_step(start + n, count)
    return {name: torch.cat(chunks).contiguous() for name, chunks in parts.items()}
