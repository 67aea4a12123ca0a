"""Resumable training: the whole state of a run (model, optimiser, EMA, step, losses, random streams) in one file.

Saved atomically every few steps; a run started again with the same folder continues where it stopped,
and reaches the same weights as an uninterrupted one (the random streams are part of the state).
"""

from __future__ import annotations

from pathlib import Path

import torch

from edge.files import write_atomically


def save_state(path: Path, state: dict) -> None:
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict | None:
    """The saved state, or None for a fresh run (tensors and plain values only: weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
