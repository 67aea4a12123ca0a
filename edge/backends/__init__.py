"""The backend protocol: one module per target runtime, found by name (`edge.backends.<name>`).

A backend lowers one prepared graph to the bytes of its artifact (with a report of how it went),
and, where its runtime exists on this machine, loads an artifact back as a callable. Backends never
import each other; adding one touches nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from edge.errors import EdgeError


@dataclass
class LoweredGraph:
    name: str
    payload: bytes | Path  # the artifact file's content, or a folder artifact (handed over: moved into the bundle)
    float_ops: list[str]  # ops the recipe left in floating point
    report: dict = field(default_factory=dict)  # partitions, ops outside delegates, seconds, ...


Program = Callable[..., torch.Tensor]  # a loaded artifact: tensors in, first output tensor out


class Backend(Protocol):
    options: Mapping[str, tuple[str, ...]]  # target options it takes (e.g. {"ios": ("17", "18")}) and their values

    def lower(self, graph, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]],
              float_modules: tuple[str, ...] = (), options: Mapping[str, str] | None = None) -> LoweredGraph:
        """Lower a PreparedGraph (edge.compile) in quant mode `quant`, calibrating on `calibration`;
        float_modules (module paths in the graph, from a recipe) stay in floating point; options are
        target options (`edge compile --ios 18`), already checked against `options`."""

    def load(self, path: Path) -> Program:
        """Load an artifact for running here; EdgeError when this machine has no runtime for it."""

    def versions(self) -> dict[str, str]:
        """Versions of the tools this backend lowered with, for the manifest."""

    # Optional, for `edge sensitivity`: simulator(graph, quant, calibration) -> (float_modules -> a torch
    # callable computing the graph as `lower` would quantize it with those modules float).
    # Optional, for `edge profile`: set_threads(n) sizes the runtime's thread pool; op_profile(path, inputs,
    # runs) -> edge.etdump.op_breakdown's dict (top ops by time) from the runtime's own profiler.
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


def check_options(backend: Backend, target: str, options: Mapping[str, str]) -> dict[str, str]:
    """The target options of a compile request, each known to the backend and one of its values."""
    accepted = getattr(backend, "options", {})
    for key, value in options.items():
        if key not in accepted:
            takes = ", ".join(f"--{k}" for k in accepted) or "no options"
            raise EdgeError(f"target {target} has no option --{key} (it takes {takes})")
        if value not in accepted[key]:
            raise EdgeError(f"target {target}: --{key} {value} is not supported: choose one of {', '.join(accepted[key])}")
    return dict(options)
