"""How well a model inpaints held-out photographs: the hole's PSNR against the photograph's own pixels, beside
two baselines: the same architecture with random weights, and a fill that only blurs the surroundings in.

Every fill is pasted back the way the pipeline does, and compared only inside the (binary) hole.
"""

from __future__ import annotations

import torch.nn.functional as F
from PIL import Image

from edge.compile.calibration import ImagePair
from edge.compile.graphs import build_graphs
from edge.compile.prepare import default_sampling_plan
from edge.models import get_preset, load_unet, load_vae
from edge.pipeline.loop import TorchGraphs, inpaint_image, paste_back, to_image, to_tensor
from edge.quality.metrics import psnr_db


def blur_fill(picture: Image.Image, binary_mask: Image.Image) -> Image.Image:
    """The hole filled from its surroundings by push-pull: average the known pixels down a pyramid until every
    cell has some, then blend back up (each level keeps what it knows, takes the coarser level elsewhere)."""
    image = to_tensor(picture)  # (1, 3, H, W) in [0, 1]
    known = 1 - to_tensor(binary_mask)[:, :1]  # (1, 1, H, W): 1 outside the hole
    levels = [(image * known, known)]
    while min(levels[-1][1].shape[-2:]) > 1:
        colour, weight = levels[-1]
        levels.append((F.avg_pool2d(colour, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)))
    colour, weight = levels[-1]
    filled = colour / weight.clamp(min=1e-6)
    for colour, weight in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        trust = weight.clamp(max=1e-3) / 1e-3  # 1 where the level has any known pixel
        filled = trust * colour / weight.clamp(min=1e-6) + (1 - trust) * coarse
    return paste_back(to_image(filled), picture, binary_mask)


def hole_psnr_db(picture: Image.Image, binary_mask: Image.Image, result: Image.Image) -> float:
    hole = to_tensor(binary_mask)[0, 0] > 0.5  # (H, W)
    return psnr_db(to_tensor(picture)[0], to_tensor(result)[0], hole)


def fp32_fills(preset_name: str, pairs: list[ImagePair]) -> list[Image.Image]:
    """The fp32 torch pipeline's result on each pair (start-noise seed = pair index), with the preset's default
    weights (shipped, else seeded random)."""
    preset = get_preset(preset_name)
    graphs = TorchGraphs(build_graphs(preset, load_unet(preset), load_vae(preset)))
    plan = default_sampling_plan(preset)
    return [inpaint_image(graphs, plan, preset.image_size, *pair.pictures(), seed=index)
            for index, pair in enumerate(pairs)]


def held_out_scores(trained: str, random: str, pairs: list[ImagePair]) -> dict[str, list[float]]:
    """Per pair, the hole's PSNR (dB) against the truth: the trained preset, the same architecture with random
    weights, the blur fill."""
    pictures = [pair.pictures() for pair in pairs]
    scores = {name: [hole_psnr_db(*p, r) for p, r in zip(pictures, fp32_fills(preset, pairs), strict=True)]
              for name, preset in (("trained", trained), ("random", random))}
    return {**scores, "blur_fill": [hole_psnr_db(*p, blur_fill(*p)) for p in pictures]}
