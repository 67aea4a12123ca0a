"""Random training crops: a random square of a random photograph at a random scale, resized, maybe mirrored.

Crop sides run from the output size up to the photograph's short side, so the model sees both
close-ups and whole pictures squeezed to its size (what inpainting at 128 px sees). The VAE's crops are also
made vivid (channels shuffled, saturation raised): 37 of the 41 photographs are beige interiors, and a VAE
trained on them as they are returned every picture in sepia, then (channels shuffled only) in grey.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edge.train.photos import Photo

MAX_SATURATION = 2.0


def photo_tensors(photos: list[Photo]) -> list[torch.Tensor]:
    """Each photograph as (3, H, W) uint8."""
    return [torch.from_numpy(np.asarray(p.image).copy()).permute(2, 0, 1) for p in photos]


def random_crops(images: list[torch.Tensor], count: int, size: int, generator: torch.Generator,
                 vivid: bool = False) -> torch.Tensor:
    """(count, 3, size, size) float32 in [-1, 1]. vivid: each crop's RGB channels in a random order and its
    saturation (distance from its grey) scaled by 1..MAX_SATURATION."""
    out = torch.empty(count, 3, size, size)
    for i in range(count):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        height, width = image.shape[-2:]
        short = min(height, width)
        side = int(size + (short - size) * float(torch.rand((), generator=generator)))
        top = int(torch.randint(height - side + 1, (1,), generator=generator))
        left = int(torch.randint(width - side + 1, (1,), generator=generator))
        crop = image[None, :, top:top + side, left:left + side].float()  # (1, 3, side, side)
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if float(torch.rand((), generator=generator)) < 0.5:
            crop = crop.flip(-1)
        crop = crop[0] / 127.5 - 1  # (3, size, size)
        if vivid:
            grey = crop.mean(dim=0, keepdim=True)
            saturation = 1 + (MAX_SATURATION - 1) * float(torch.rand((), generator=generator))
            crop = grey + saturation * (crop[torch.randperm(3, generator=generator)] - grey)
        out[i] = crop
    return out.clamp(-1, 1)
