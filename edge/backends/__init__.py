"""The backend protocol: one module per target runtime, found by name (`edge.backends.<name>`).

A backend lowers one prepared graph to the bytes of its artifact (with a report of how it went),
and, where its runtime exists on this machine, loads an artifact back as a callable. Backends never
import each other; adding one touches nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from edge.errors import EdgeError


@dataclass
class LoweredGraph:
    name: str
    payload: bytes  # the artifact file's content
    float_ops: list[str]  # ops the recipe left in floating point
    report: dict = field(default_factory=dict)  # partitions, ops outside delegates, seconds, ...


Program = Callable[..., torch.Tensor]  # a loaded artifact: tensors in, first output tensor out


class Backend(Protocol):
    def lower(self, graph, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]],
              float_modules: tuple[str, ...] = ()) -> LoweredGraph:
        """Lower a PreparedGraph (edge.compile) in quant mode `quant`, calibrating on `calibration`;
        float_modules (module paths in the graph, from a recipe) stay in floating point."""

    def load(self, path: Path) -> Program:
        """Load an artifact for running here; EdgeError when this machine has no runtime for it."""

    def versions(self) -> dict[str, str]:
        """Versions of the tools this backend lowered with, for the manifest."""

    # Optional, for `edge sensitivity`: simulator(graph, quant, calibration) -> (float_modules -> a torch
    # callable computing the graph as `lower` would quantize it with those modules float).
    # Optional, for targets with no runtime here (edge verify / edge check): inspect(path) -> {"passed",
    # "problem", ...}, a structural check of one artifact; numerics_proxy = {"backend", "quant", "why"}, the
    # backend whose lowering of the same prepared graphs edge check measures instead.
    # Optional, for `edge compile --npu SOC`: npu_target(soc) (checked before any work) and
    # for_npu(lowered, target) -> LoweredGraph compiled ahead of time for that NPU.


def get_backend(name: str) -> Backend:
    try:
        module = importlib.import_module(f"edge.backends.{name}")
    except ModuleNotFoundError as err:
        raise EdgeError(f"no backend module edge.backends.{name} ({err.name} missing)") from err
    return module.BACKEND
