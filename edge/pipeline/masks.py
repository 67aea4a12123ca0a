"""Seeded inpainting masks: boxes and brush strokes of several sizes (white = fill).

Used for calibration and evaluation pairs whose image has no mask of its own. The same seed and
size always give the same mask.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

KINDS = ("box", "strokes", "box+strokes")


def random_mask(width: int, height: int, seed: int, kind: str | None = None) -> Image.Image:
    """An 'L' mask covering roughly 5-35% of the picture."""
    rng = random.Random(seed)
    kind = kind or rng.choice(KINDS)
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}: one of {', '.join(KINDS)}")
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    short = min(width, height)
    if "box" in kind:
        box_w, box_h = (int(rng.uniform(0.15, 0.5) * side) for side in (width, height))
        left, top = rng.randrange(0, width - box_w + 1), rng.randrange(0, height - box_h + 1)
        draw.rectangle([left, top, left + box_w, top + box_h], fill=255)
    if "strokes" in kind:
        for _ in range(rng.randint(1, 4)):
            brush = max(2, int(rng.uniform(0.02, 0.08) * short))  # thin to thick
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            points = [(x, y)]
            for _ in range(rng.randint(2, 6)):
                angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.3) * short
                x = min(max(x + length * math.cos(angle), 0), width - 1)
                y = min(max(y + length * math.sin(angle), 0), height - 1)
                points.append((x, y))
            draw.line(points, fill=255, width=brush, joint="curve")
    return mask
