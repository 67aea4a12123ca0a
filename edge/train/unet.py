"""Training the tiny Moebius UNet for inpainting, the way the published model is used.

Input: 9 channels = [noisy latent 4, mask 1, masked-image latent 4] (pairs from latents.py); the
DDIM training schedule (scaled-linear betas 0.00085..0.012, 1000 steps); noise with the pipeline's
offset; the fixed conditioning rows, replaced by the uncond rows for CFG_DROPOUT of the samples so that
classifier-free guidance has something to contrast; epsilon prediction with min-SNR-gamma loss
weights (Hang et al. 2023); AdamW with warm-up and cosine decay; the EMA of the weights is the result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from edge.models import MoebiusUNet, Preset
from edge.models.unet import NUM_CONDITIONING_TOKENS
from edge.pipeline.loop import NOISE_OFFSET
from edge.pipeline.schedule import TRAIN_TIMESTEPS, reference_scheduler
from edge.train.curves import plot_losses
from edge.train.learning_rate import learning_rate
from edge.train.state import restore, save


@dataclass(frozen=True)
class UNetTraining:
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    min_snr_gamma: float = 5.0
    cfg_dropout: float = 0.1
    ema_decay: float = 0.999
    seed: int = 0
    save_every: int = 50  # steps between saved states (and curves)


def ema_update(ema: MoebiusUNet, model: MoebiusUNet, step: int, max_decay: float) -> None:
    """Parameters: exponential moving average (decay warms up as (1+step)/(10+step)); buffers: copied."""
    decay = min(max_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for mean, live in zip(ema.parameters(), model.parameters(), strict=True):
            mean.lerp_(live, 1 - decay)
        for mean, live in zip(ema.buffers(), model.buffers(), strict=True):
            mean.copy_(live)


def train_unet(preset: Preset, pairs: dict[str, torch.Tensor], plan: UNetTraining, folder: Path,
               on_step: Callable[[int, int], None]) -> MoebiusUNet:
    """Trains (or resumes) in `folder`; returns the EMA UNet in eval mode."""
    torch.manual_seed(plan.seed)
    unet = MoebiusUNet(preset.unet).train()  # random: never the preset's shipped weights
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=plan.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(plan.seed)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "unet.state.pt"
    parts = {"model": unet, "ema": ema, "optimiser": optimiser}
    start, losses = restore(checkpoint, parts, generator)
    alphas_cumprod = reference_scheduler().alphas_cumprod  # (1000,) float32
    cond_ids = torch.arange(NUM_CONDITIONING_TOKENS)
    count = pairs["latents"].shape[0]
    for step in range(start, plan.steps):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, plan)
        index = torch.randint(count, (plan.batch,), generator=generator)
        clean = pairs["latents"][index]  # (B, 4, s, s)
        noise = (torch.randn(clean.shape, generator=generator)
                 + NOISE_OFFSET * torch.randn(plan.batch, clean.shape[1], 1, 1, generator=generator))
        timesteps = torch.randint(TRAIN_TIMESTEPS, (plan.batch,), generator=generator)
        alpha = alphas_cumprod[timesteps][:, None, None, None]  # (B, 1, 1, 1)
        noisy = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
        latent = torch.cat([noisy, pairs["mask_latent"][index], pairs["masked_latents"][index]], dim=1)  # (B, 9, s, s)
        dropped = torch.rand(plan.batch, generator=generator) < plan.cfg_dropout
        input_ids = cond_ids.expand(plan.batch, -1) + NUM_CONDITIONING_TOKENS * dropped[:, None]  # (B, 10)
        snr = alpha.flatten() / (1 - alpha.flatten())
        weight = snr.clamp(max=plan.min_snr_gamma) / snr  # min-SNR-gamma for epsilon prediction
        error = (unet(latent, timesteps, input_ids) - noise).square().mean(dim=(1, 2, 3))  # (B,)
        loss = (weight * error).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        ema_update(ema, unet, step, plan.ema_decay)
        losses.append(loss.item())
        on_step(step + 1, plan.steps)
        if (step + 1) % plan.save_every == 0 or step + 1 == plan.steps:
            save(checkpoint, step + 1, losses, parts, generator, plan)
            plot_losses(losses, "UNet loss (min-SNR weighted epsilon MSE)", folder / "unet_loss.png")
    return ema.eval()
