"""The sampling schedule: DDIM constants, taken from diffusers' DDIMScheduler (the reference).

Everything the denoising loop needs is plain numbers (timesteps, ᾱ before and after each step,
the fp32 timestep features), so an app can run the loop from the bundle's manifest alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

TRAIN_TIMESTEPS = 1000
DEFAULT_STEPS = 20
DEFAULT_STRENGTH = 0.99  # 20 steps at 0.99 drop the first: 19 steps, t = 900 .. 0
DEFAULT_GUIDANCE = 2.0  # published inference (the training script's default is 2.5)


def reference_scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=TRAIN_TIMESTEPS, clip_sample=False, set_alpha_to_one=True,
                         steps_offset=0)


@dataclass(frozen=True)
class DDIMSchedule:
    timesteps: tuple[int, ...]  # descending, e.g. 900, 850, ..., 0
    alphas: tuple[float, ...]  # ᾱ_t at each timestep (float32 values)
    alphas_next: tuple[float, ...]  # ᾱ at the timestep each step moves to (1.0 after t = 0)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The clean latent noised to the first timestep (diffusers' add_noise)."""
        alpha = torch.tensor(self.alphas[0], dtype=torch.float32)
        return alpha.sqrt() * latents + (1 - alpha).sqrt() * noise

    def step(self, index: int, sample: torch.Tensor, noise_pred: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step (eta = 0) from timesteps[index] to the next."""
        alpha = torch.tensor(self.alphas[index], dtype=torch.float32)
        alpha_next = torch.tensor(self.alphas_next[index], dtype=torch.float32)
        return ddim_update(sample, noise_pred, alpha, alpha_next)

    def to_json(self) -> dict:
        return {"kind": "ddim", "eta": 0.0, "timesteps": list(self.timesteps),
                "alphas_cumprod": list(self.alphas), "alphas_cumprod_next": list(self.alphas_next)}


def ddim_update(sample: torch.Tensor, noise_pred: torch.Tensor, alpha: torch.Tensor,
                alpha_next: torch.Tensor) -> torch.Tensor:
    """DDIM (eta = 0) from ᾱ = alpha to ᾱ = alpha_next, in float32 (alpha and alpha_next: 0-d or (1,) tensors)."""
    predicted_clean = (sample - (1 - alpha).sqrt() * noise_pred) / alpha.sqrt()
    return alpha_next.sqrt() * predicted_clean + (1 - alpha_next).sqrt() * noise_pred


def ddim_schedule(steps: int = DEFAULT_STEPS, strength: float = DEFAULT_STRENGTH) -> DDIMSchedule:
    scheduler = reference_scheduler()
    scheduler.set_timesteps(steps)
    kept = min(int(steps * strength), steps)  # diffusers' img2img rule
    timesteps = [int(t) for t in scheduler.timesteps[steps - kept:]]
    stride = TRAIN_TIMESTEPS // steps
    alphas_cumprod = scheduler.alphas_cumprod  # float32
    final = float(scheduler.final_alpha_cumprod)
    alphas = tuple(float(alphas_cumprod[t]) for t in timesteps)
    alphas_next = tuple(float(alphas_cumprod[t - stride]) if t - stride >= 0 else final for t in timesteps)
    return DDIMSchedule(tuple(timesteps), alphas, alphas_next)
