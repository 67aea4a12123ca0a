"""LPIPS (Zhang et al. 2018, AlexNet variant, v0.1) from weights already on disk; nothing is downloaded.

`--lpips-weights DIR` names a folder holding the two files LPIPS is made of, as their projects ship
them: torchvision's AlexNet (`alexnet-owt-7be5be79.pth`, keys `features.N.weight/bias`) and the lpips
package's linear heads (`lpips/weights/v0.1/alex.pth`, keys `linK.model.1.weight`). Any `.pth` or
`.safetensors` files in the folder are read and their keys merged.

distance(x, y) = sum over the five ReLU outputs k of mean_hw || w_k * (n(f_k(x)) - n(f_k(y))) ||^2,
where n() scales each position's feature vector to unit length; inputs are pictures in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge.errors import EdgeError

# torchvision AlexNet .features: (index, in, out, kernel, stride, padding); LPIPS reads each conv's ReLU
ALEXNET_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
                 (10, 256, 256, 3, 1, 1))
POOL_AFTER = (0, 3)  # a 3x3 stride-2 max pool follows the ReLUs of these convs
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS input scaling, for inputs in [-1, 1]
SCALE = (0.458, 0.448, 0.450)
MIN_SIDE = 64  # smaller crops leave AlexNet's last layers empty


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for _, i, o, k, s, p in ALEXNET_CONVS)
        self.heads = nn.ModuleList(nn.Conv2d(o, 1, 1, bias=False) for _, _, o, _, _, _ in ALEXNET_CONVS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def features(self, image01: torch.Tensor) -> list[torch.Tensor]:
        x = (image01 * 2 - 1 - self.shift) / self.scale  # (1, 3, H, W)
        taps = []
        for (index, *_), conv in zip(ALEXNET_CONVS, self.convs, strict=True):
            x = F.relu(conv(x))
            taps.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))  # unit length per position
            if index in POOL_AFTER:
                x = F.max_pool2d(x, 3, 2)
        return taps

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b (1, 3, H, W) in [0, 1] -> scalar distance."""
        total = torch.zeros(())
        for head, fa, fb in zip(self.heads, self.features(a), self.features(b), strict=True):
            total = total + head((fa - fb).pow(2)).mean()
        return total


def load_lpips(folder: Path) -> LPIPS:
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeError(f"{folder}: no such LPIPS weights folder")
    state: dict[str, torch.Tensor] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".pth":
            try:
                state.update(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as err:  # torch raises many types for a file that is not a state dict
                raise EdgeError(f"{path}: not a readable state dict ({err.__class__.__name__})") from err
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(path))
    wanted = {}
    for k, (index, *_) in enumerate(ALEXNET_CONVS):
        wanted[f"convs.{k}.weight"], wanted[f"convs.{k}.bias"] = f"features.{index}.weight", f"features.{index}.bias"
        wanted[f"heads.{k}.weight"] = f"lin{k}.model.1.weight"
    missing = [source for source in wanted.values() if source not in state]
    if missing:
        raise EdgeError(f"{folder}: LPIPS weights lack {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''} (need torchvision's AlexNet and lpips' alex.pth)")
    model = LPIPS()
    try:
        model.load_state_dict({ours: state[theirs] for ours, theirs in wanted.items()} |
                              {"shift": model.shift, "scale": model.scale})
    except RuntimeError as err:
        raise EdgeError(f"{folder}: LPIPS weights have the wrong shapes ({str(err).splitlines()[-1].strip()})") from err
    return model.eval()


def crop_around(mask: torch.Tensor, margin: int = 16) -> tuple[slice, slice]:
    """Rows and columns of the mask's bounding box plus a margin, at least MIN_SIDE each where the picture allows."""
    rows, cols = torch.nonzero(mask, as_tuple=True)

    def span(low: int, high: int, size: int) -> slice:
        low, high = max(0, low - margin), min(size, high + 1 + margin)
        grow = max(0, MIN_SIDE - (high - low))
        low = max(0, low - grow // 2)
        return slice(low, min(size, max(high, low + MIN_SIDE)))

    return span(int(rows.min()), int(rows.max()), mask.shape[0]), span(int(cols.min()), int(cols.max()), mask.shape[1])
