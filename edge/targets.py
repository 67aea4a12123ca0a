"""Targets as data: one TOML profile per target in `targets/` (backend, quant modes, graph options)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError
from edge.gates import parse_threshold

SUPPORTED_UNET_BATCH = 2  # CFG as one batch-2 UNet call; two batch-1 calls are not built yet
TARGETS_DIR = Path(os.environ.get("EDGE_TARGETS_DIR", Path(__file__).resolve().parents[1] / "targets"))


@dataclass(frozen=True)
class TargetProfile:
    name: str
    backend: str  # module edge.backends.<backend>
    description: str
    artifact: str  # file suffix of one lowered graph
    quant_modes: tuple[str, ...]
    default_quant: str
    runs_here: bool  # whether this machine has the runtime
    unet_batch: int
    rewrites: tuple[str, ...]
    tolerance: dict[str, float]  # end-to-end max abs of the decoded image vs the torch pipeline, per quant mode
    gates: dict[str, dict[str, object]]  # quant mode -> {metric: threshold} for `edge check` (edge.gates)
    source: Path  # the profile file

    def check_quant(self, quant: str | None) -> str:
        quant = quant or self.default_quant
        if quant not in self.quant_modes:
            raise EdgeError(f"target {self.name} has no quant mode '{quant}': choose one of {', '.join(self.quant_modes)}")
        return quant

    def to_json(self) -> dict:
        return {"name": self.name, "backend": self.backend, "description": self.description,
                "quant_modes": list(self.quant_modes), "default_quant": self.default_quant,
                "runs_here": self.runs_here, "unet_batch": self.unet_batch, "rewrites": list(self.rewrites),
                "tolerance": self.tolerance, "gates": self.gates}


def _read(path: Path) -> TargetProfile:
    try:
        raw = tomllib.loads(path.read_text())
        graphs = raw.get("graphs", {})
        profile = TargetProfile(raw["name"], raw["backend"], raw["description"], raw["artifact"],
                                tuple(raw["quant_modes"]), raw["default_quant"], bool(raw["runs_here"]),
                                int(graphs.get("unet_batch", 2)), tuple(graphs.get("rewrites", ())),
                                {k: float(v) for k, v in raw.get("tolerance", {}).items()},
                                {mode: dict(table) for mode, table in raw.get("gates", {}).items()}, path)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise EdgeError(f"{path}: not a valid target profile ({err})") from err
    if profile.unet_batch != SUPPORTED_UNET_BATCH:
        raise EdgeError(f"{path}: unet_batch {profile.unet_batch} is not supported (only {SUPPORTED_UNET_BATCH})")
    if profile.default_quant not in profile.quant_modes or set(profile.tolerance) - set(profile.quant_modes):
        raise EdgeError(f"{path}: default_quant and tolerance keys must be among quant_modes")
    if set(profile.gates) - set(profile.quant_modes):
        raise EdgeError(f"{path}: gates tables must be named after quant_modes ([gates.<mode>])")
    for mode, table in profile.gates.items():
        for metric, raw in table.items():
            parse_threshold(metric, raw, f"{path} [gates.{mode}]")
    return profile


def list_targets() -> list[TargetProfile]:
    return [_read(path) for path in sorted(TARGETS_DIR.glob("*.toml"))]


def load_target(name: str) -> TargetProfile:
    path = TARGETS_DIR / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(t.name for t in list_targets())
        raise EdgeError(f"unknown target '{name}': choose one of {names}")
    return _read(path)
