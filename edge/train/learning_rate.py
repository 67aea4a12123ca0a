"""The learning-rate schedule both trainings use: linear warm-up, then cosine decay to a tenth of the peak."""

from __future__ import annotations

import math
from typing import Protocol


class Scheduled(Protocol):
    lr: float
    warmup: int
    steps: int


def learning_rate(step: int, plan: Scheduled) -> float:
    if step < plan.warmup:
        return plan.lr * (step + 1) / plan.warmup
    progress = (step - plan.warmup) / max(plan.steps - plan.warmup, 1)
    return plan.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
