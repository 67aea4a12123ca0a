"""The backend contract: what every target's backend implements, and the optional abilities some have.

A backend is one module or package `edge.backends.<name>` exposing `BACKEND`, an object that
satisfies `Backend`: it names its quant modes (the one place they are stated), lowers one prepared
graph to the bytes (or folder) of its artifact with a report of how it went, loads an artifact back
as a callable where its runtime exists here, and names the tools it lowered with. Optional abilities
are small protocols of their own, tested with `isinstance`; a backend has them or does not.
Backends never import each other; what several share lives in `edge.backends.common`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from edge.compile.graphs import PreparedGraph
from edge.errors import EdgeError

Sample = tuple[torch.Tensor, ...]  # one call's inputs
Calibration = Sequence[Sample]  # recorded inputs of one graph, timestep-aware (edge.compile.calibration)
Program = Callable[..., torch.Tensor]  # a loaded artifact: tensors in, first output tensor out


@dataclass
class LoweredGraph:
    name: str
    payload: bytes | Path  # the artifact file's content, or a folder artifact (handed over: moved into the bundle)
    float_ops: list[str]  # ops the quant mode left in floating point
    report: dict = field(default_factory=dict)  # partitions, ops outside delegates, ... (backend-specific)


@runtime_checkable
class Backend(Protocol):
    name: str
    quant_modes: Mapping[str, str]  # quant mode -> what it quantizes; the profile picks its default among them
    options: Mapping[str, tuple[str, ...]]  # target options it takes (e.g. {"ios": ("17", "18")}) and their values

    def lower(self, graph: PreparedGraph, quant: str, calibration: Calibration, float_modules: tuple[str, ...] = (),
              options: Mapping[str, str] | None = None) -> LoweredGraph:
        """Lower `graph` in quant mode `quant` (already checked), calibrating on `calibration`; float_modules
        (module paths in the graph, from a recipe) stay in floating point; options are checked target options."""

    def load(self, path: Path) -> Program:
        """Load an artifact for running here; EdgeError when this machine has no runtime for it."""

    def versions(self) -> dict[str, str]:
        """Versions of the tools this backend lowers with, for the manifest."""


@runtime_checkable
class Simulates(Protocol):
    """`edge sensitivity`: the target's quantizer, runnable here with chosen modules kept float."""

    def simulator(self, graph: PreparedGraph, quant: str, calibration: Calibration) -> Callable[[tuple[str, ...]], Program]:
        """float_modules -> a callable computing the graph as `lower` would quantize it with those modules float."""


@runtime_checkable
class SetsThreads(Protocol):
    """`edge profile --threads`: sizes the runtime's thread pool for programs loaded from then on."""

    def set_threads(self, threads: int) -> None: ...


@runtime_checkable
class ProfilesOps(Protocol):
    """`edge profile`: the runtime's own per-op profile of one artifact."""

    def op_profile(self, path: Path, inputs: Sequence[torch.Tensor], runs: int) -> dict:
        """edge.device.etdump.op_breakdown's dict (top ops by time) over `runs` calls."""


@dataclass(frozen=True)
class InspectionResult:
    passed: bool
    problem: str | None
    delegates: int = 0

    def to_json(self) -> dict:
        return {"passed": self.passed, "problem": self.problem, "delegates": self.delegates}


@runtime_checkable
class InspectsPrograms(Protocol):
    """`edge verify` for a target with no runtime here: a structural check of one artifact."""

    def inspect(self, path: Path) -> InspectionResult: ...


@dataclass(frozen=True)
class NumericsProxy:
    """What `edge check` measures for a target with no runtime here: the bundle's graphs prepared as it records
    them (same export, same rewrites) and run in torch fp32; `why` says so, and what that leaves out."""

    why: str

    def to_json(self) -> dict:
        return {"backend": "torch", "quant": "fp32", "why": self.why}

    @staticmethod
    def measured_as() -> str:
        return "run in torch fp32"


@runtime_checkable
class HasNumericsProxy(Protocol):
    """`edge check` for a target with no runtime here: the prepared graphs in torch stand in for it, and why."""

    numerics_proxy: NumericsProxy


@runtime_checkable
class CompilesForNpu(Protocol):
    """`edge compile --npu SOC`: ahead-of-time compilation of lowered graphs for a vendor NPU."""

    def npu_target(self, soc: str):
        """The vendor target for SOC, checked (plugin and SDK present) before any work; EdgeError otherwise."""

    def for_npu(self, lowered: LoweredGraph, npu) -> LoweredGraph: ...


@runtime_checkable
class ShipsStepGraph(Protocol):
    """Runtimes that keep tensors on a device between calls (onnxruntime-web on WebGPU): the bundle also holds
    the sampling step (edge.pipeline.step.SamplingStep) as an artifact, so an app's loop reads nothing back."""

    def lower_step(self, step: PreparedGraph) -> bytes:
        """The step graph's artifact, fp32 (its arithmetic is a few multiply-adds: nothing to quantize)."""


def check_quant(backend: Backend, quant: str) -> str:
    if quant not in backend.quant_modes:
        raise EdgeError(f"target {backend.name} has no quant mode '{quant}': choose one of {', '.join(backend.quant_modes)}")
    return quant


def check_options(backend: Backend, options: Mapping[str, str]) -> dict[str, str]:
    """The target options of a compile request, each known to the backend and one of its values."""
    for key, value in options.items():
        if key not in backend.options:
            takes = ", ".join(f"--{k}" for k in backend.options) or "no options"
            raise EdgeError(f"target {backend.name} has no option --{key} (it takes {takes})")
        if value not in backend.options[key]:
            raise EdgeError(f"target {backend.name}: --{key} {value} is not supported: choose one of "
                            f"{', '.join(backend.options[key])}")
    return dict(options)
