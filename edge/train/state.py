"""Resumable training: the whole state of a run (model, optimiser, EMA, step, losses, random streams) in one file.

Saved atomically every few steps; a run started again with the same folder continues where it stopped,
and reaches the same weights as an uninterrupted one (the random streams are part of the state).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from edge.files import write_atomically


def save_state(path: Path, state: dict) -> None:
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict | None:
    """The saved state, or None for a fresh run (tensors and plain values only: weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def restore(path: Path, parts: dict, generator: torch.Generator) -> tuple[int, list[float]]:
    """Loads a saved run into `parts` (name -> anything with load_state_dict) and `generator`; returns (step,
    losses), or (0, []) when nothing was saved yet."""
    state = load_state(path)
    if state is None:
        return 0, []
    for name, part in parts.items():
        part.load_state_dict(state[name])
    generator.set_state(state["generator"])
    return state["step"], state["losses"]


def save(path: Path, step: int, losses: list[float], parts: dict, generator: torch.Generator, plan) -> None:
    """What restore reads back: the step, the losses, every part's state_dict, the random stream, the plan."""
    save_state(path, {"step": step, "losses": losses, "generator": generator.get_state(), "plan": asdict(plan),
                      **{name: part.state_dict() for name, part in parts.items()}})
