"""Training the tiny VAE: diffusers' AutoencoderKL at the preset's widths, on random photograph crops.

The trained preset keeps moebius-tiny's VAE widths but with 8 norm groups instead of 32: at 32 channels, 32
groups normalise every channel on its own (an instance norm, which SD's VAE never is); 8 keep SD's 4 channels
per group.

loss = L1 + CHROMA_WEIGHT * L1(chroma) + LATENT_COLOUR_WEIGHT * L1(latent channels 1-2, block colour)
       + SSIM_WEIGHT * (1 - SSIM) + KL_WEIGHT * KL, with AdamW, warm-up and cosine decay.
Colour is what a 4-channel latent at f = 8 gives up first. Trained on L1 + SSIM alone (1200 steps) the VAE
returned sepia pictures; with vivid crops (edge.train.crops) grey ones; a chroma L1 alone did not move in 500
steps. Asking two latent channels to carry each 8x8 block's chroma did: the decoder then learns to use it.

The VAE is fully convolutional (its one attention runs at 1/8 scale), so it trains on 64 px crops, four
times cheaper than 128 px, and runs at 128 px. The latent scaling factor is measured afterwards as
1 / std of the latents of 128 px crops and stored in the saved config, as SD's 0.18215 was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from edge.models import Preset
from edge.train.crops import random_crops
from edge.train.curves import plot_losses
from edge.train.learning_rate import learning_rate
from edge.train.state import restore, save


@dataclass(frozen=True)
class VAETraining:
    steps: int = 1500
    batch: int = 16
    crop: int = 64
    lr: float = 1e-3
    warmup: int = 50
    ssim_weight: float = 0.5
    chroma_weight: float = 1.0
    latent_colour_weight: float = 1.0
    kl_weight: float = 1e-6
    seed: int = 0
    save_every: int = 50  # steps between saved states (and curves)
    scaling_crops: int = 256  # 128 px crops whose latents' std gives the scaling factor


def chroma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> each pixel's colour minus its grey: what L1 and SSIM on pale photographs barely see."""
    return x - x.mean(dim=1, keepdim=True)


def block_colour(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 2, H/8, W/8): the red and green chroma of each 8x8 block, x4 (to the latents' scale)."""
    blocks = F.avg_pool2d(x, 8)  # (B, 3, H/8, W/8)
    return 4 * chroma(blocks)[:, :2]


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two (B, C, H, W) batches in [0, 1] (Gaussian window, Wang et al. 2004)."""
    channels = x.shape[1]
    taps = torch.exp(-((torch.arange(window) - window // 2) ** 2) / (2 * sigma ** 2))
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2).expand(channels, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2
    covariance = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    score = ((2 * mu_x * mu_y + c1) * (2 * covariance + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return score.mean()


def train_vae(preset: Preset, images: list[torch.Tensor], plan: VAETraining, folder: Path,
              on_step: Callable[[int, int], None]) -> AutoencoderKL:
    """Trains (or resumes) in `folder`; returns the VAE with its measured scaling factor, in eval mode."""
    torch.manual_seed(plan.seed)
    vae = AutoencoderKL.from_config(preset.vae)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=plan.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(plan.seed)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "vae.state.pt"
    parts = {"model": vae, "optimiser": optimiser}
    start, losses = restore(checkpoint, parts, generator)
    vae.train()
    for step in range(start, plan.steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, plan)
        batch = random_crops(images, plan.batch, plan.crop, generator, vivid=True)  # (B, 3, crop, crop) in [-1, 1]
        posterior = vae.encode(batch).latent_dist
        decoded = vae.decode(posterior.sample(generator)).sample
        loss = ((decoded - batch).abs().mean()
                + plan.latent_colour_weight * (posterior.mean[:, 1:3] - block_colour(batch)).abs().mean()
                + plan.chroma_weight * (chroma(decoded) - chroma(batch)).abs().mean()
                + plan.ssim_weight * (1 - ssim(decoded.clamp(-1, 1) / 2 + 0.5, batch / 2 + 0.5))
                + plan.kl_weight * posterior.kl().mean())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        on_step(step + 1, plan.steps)
        if (step + 1) % plan.save_every == 0 or step + 1 == plan.steps:
            save(checkpoint, step + 1, losses, parts, generator, plan)
            plot_losses(losses, "VAE loss (L1 + chroma + latent colour + SSIM + KL)", folder / "vae_loss.png")
    vae.eval().requires_grad_(False)
    vae.register_to_config(scaling_factor=measured_scaling_factor(vae, images, preset.image_size, plan))
    return vae


@torch.no_grad()
def measured_scaling_factor(vae: AutoencoderKL, images: list[torch.Tensor], size: int, plan: VAETraining) -> float:
    """1 / std of the latent means of `plan.scaling_crops` model-size crops (their own seeded stream)."""
    generator = torch.Generator().manual_seed(plan.seed + 1)
    crops = random_crops(images, plan.scaling_crops, size, generator)
    latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in crops.split(32)])
    return round(1.0 / float(latents.std()), 5)
