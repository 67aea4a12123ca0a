"""Quality metrics of a compiled bundle against the fp32 model. Definitions (also in the README):

- SQNR (dB) = 10 log10( sum(reference^2) / sum((value - reference)^2) ), summed over every element of
  every sample compared; inf when they are equal.
- max abs = max |value - reference| over the same elements.
- PSNR (dB) of pictures in [0, 1] = 10 log10(1 / MSE), MSE over the pixels compared (all three
  channels); "masked" compares only the pixels of the binary hole mask.
- SSIM: Wang et al. 2004 on each channel of pictures in [0, 1], Gaussian window sigma 1.5 (11x11),
  C1 = 0.01^2, C2 = 0.03^2, reflect padding so the map has the picture's size; the map is averaged
  over channels, then over all pixels (SSIM) or over the hole's pixels (masked SSIM).
- CFG ratio = ||cond - uncond|| of the bundle's UNet output / the same for fp32, per sample: the
  guidance signal the bundle keeps (1 = all of it). Quantization often shrinks it while SQNR looks fine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SSIM_SIGMA, SSIM_WINDOW = 1.5, 11
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def sqnr_db(reference: torch.Tensor, value: torch.Tensor) -> float:
    noise = (value.double() - reference.double()).pow(2).sum()
    signal = reference.double().pow(2).sum()
    return math.inf if noise == 0 else float(10 * torch.log10(signal / noise))


def max_abs(reference: torch.Tensor, value: torch.Tensor) -> float:
    return float((value.double() - reference.double()).abs().max())


@dataclass(frozen=True)
class ErrorSums:
    """What SQNR and max abs over many samples are made of: float64 sums of the reference's and the error's
    squares, and the largest error. Parts measured apart (other processes, other machines) and added in the same
    order give exactly the numbers of one run over every sample."""

    signal: float = 0.0
    noise: float = 0.0
    max_abs: float = 0.0
    samples: int = 0

    @classmethod
    def of(cls, reference: torch.Tensor, value: torch.Tensor) -> ErrorSums:
        error = value.double() - reference.double()
        return cls(float(reference.double().pow(2).sum()), float(error.pow(2).sum()), float(error.abs().max()), 1)

    def __add__(self, other: ErrorSums) -> ErrorSums:
        return ErrorSums(self.signal + other.signal, self.noise + other.noise, max(self.max_abs, other.max_abs),
                         self.samples + other.samples)

    @property
    def sqnr_db(self) -> float:
        if self.noise == 0:
            return math.inf
        return -math.inf if self.signal == 0 else 10 * math.log10(self.signal / self.noise)


def sqnr_db_over(references: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> float:
    """SQNR with signal and noise summed over every sample."""
    return sqnr_db(_flat(references), _flat(values))


def max_abs_over(references: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> float:
    return max_abs(_flat(references), _flat(values))


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def psnr_db(reference: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """reference, value (3, H, W) in [0, 1]; mask (H, W) bool selects the pixels compared."""
    error = (value.double() - reference.double()).pow(2)  # (3, H, W)
    mse = error[:, mask].mean() if mask is not None else error.mean()
    return math.inf if mse == 0 else float(-10 * torch.log10(mse))


def ssim_map(reference: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """(3, H, W) pictures in [0, 1] -> (H, W) SSIM map, averaged over channels."""
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    gauss = torch.exp(-coords.pow(2) / (2 * SSIM_SIGMA**2))
    gauss = gauss / gauss.sum()
    window = (gauss[:, None] * gauss[None, :]).expand(3, 1, SSIM_WINDOW, SSIM_WINDOW)  # (3, 1, 11, 11): per channel
    pad = SSIM_WINDOW // 2

    def blur(x: torch.Tensor) -> torch.Tensor:  # (1, 3, H, W) -> (1, 3, H, W)
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), window, groups=3)

    x, y = reference.double()[None], value.double()[None]  # (1, 3, H, W)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return ssim[0].mean(0)


def ssim(reference: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    values = ssim_map(reference, value)
    return float(values[mask].mean() if mask is not None else values.mean())


def cfg_ratio(reference_noise: torch.Tensor, value_noise: torch.Tensor) -> float:
    """UNet outputs (2, 4, h, w), batch [uncond, cond] -> ||value guidance|| / ||reference guidance||."""
    reference_guidance = (reference_noise[1] - reference_noise[0]).double().norm()
    value_guidance = (value_noise[1] - value_noise[0]).double().norm()
    return float(value_guidance / reference_guidance) if reference_guidance > 0 else math.nan
