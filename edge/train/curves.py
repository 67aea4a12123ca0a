"""Loss curves as a PNG (Pillow; nothing else needed): the raw loss faint, its running mean bold, log scale."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

from edge.files import write_atomically

WIDTH, HEIGHT, MARGIN = 640, 360, 48
SMOOTHING = 0.95


def running_mean(values: list[float]) -> list[float]:
    """Exponential running mean, bias-corrected (Adam's correction) so that its start is not pulled to zero."""
    smoothed, level = [], 0.0
    for i, v in enumerate(values):
        level = SMOOTHING * level + (1 - SMOOTHING) * v
        smoothed.append(level / (1 - SMOOTHING ** (i + 1)))
    return smoothed


def plot_losses(losses: list[float], title: str, out: Path) -> None:
    canvas = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, 12), f"{title}: {len(losses)} steps, last mean {running_mean(losses)[-1]:.4g}", fill="black")
    draw.rectangle([MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN], outline="black")
    positive = [max(v, 1e-12) for v in losses]
    low, high = math.log10(min(positive)), math.log10(max(positive))
    high = max(high, low + 1e-6)

    def point(i: int, v: float) -> tuple[float, float]:
        x = MARGIN + (WIDTH - 2 * MARGIN) * i / max(len(losses) - 1, 1)
        y = HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (math.log10(max(v, 1e-12)) - low) / (high - low)
        return x, y

    for decade in range(math.floor(low), math.ceil(high) + 1):
        if low <= decade <= high:
            _, y = point(0, 10.0 ** decade)
            draw.text((4, y - 6), f"1e{decade}", fill="gray")
    if len(losses) > 1:
        draw.line([point(i, v) for i, v in enumerate(positive)], fill=(170, 190, 230), width=1)
        draw.line([point(i, v) for i, v in enumerate(running_mean(positive))], fill=(20, 60, 160), width=2)
    draw.text((MARGIN, HEIGHT - MARGIN + 8), f"{low:.2f} .. {high:.2f} log10 loss", fill="gray")
    write_atomically(out, lambda tmp: canvas.save(tmp, format="PNG"))
