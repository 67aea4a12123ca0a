"""Targets: one TOML profile in `targets/` (data) over one backend (code, `edge.backends.<backend>`).

The backend states the quant modes it implements; the profile picks the default among them, names the
graph rewrites the backend needs, and sets per quant mode the end-to-end tolerance and `edge check`'s gates.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.backends import get_backend
from edge.backends.contract import Backend, check_quant
from edge.errors import EdgeError
from edge.quality.gates import parse_threshold

SUPPORTED_UNET_BATCH = 2  # CFG as one batch-2 UNet call; two batch-1 calls are not built yet


@dataclass(frozen=True)
class TargetProfile:
    name: str
    backend: Backend
    description: str
    artifact: str  # file suffix of one lowered graph
    default_quant: str
    runs_here: bool  # whether this machine has the runtime
    unet_batch: int
    rewrites: tuple[str, ...]
    tolerance: dict[str, float]  # end-to-end max abs of the decoded image vs the torch pipeline, per quant mode
    gates: dict[str, dict[str, object]]  # quant mode -> {metric: threshold} for `edge check` (edge.quality.gates)
    source: Path  # the profile file

    @property
    def quant_modes(self) -> tuple[str, ...]:
        return tuple(self.backend.quant_modes)

    def check_quant(self, quant: str | None) -> str:
        return check_quant(self.backend, quant or self.default_quant)

    def to_json(self) -> dict:
        return {"name": self.name, "backend": self.backend.name, "description": self.description,
                "quant_modes": list(self.quant_modes), "quant_mode_descriptions": dict(self.backend.quant_modes),
                "default_quant": self.default_quant, "runs_here": self.runs_here, "unet_batch": self.unet_batch,
                "rewrites": list(self.rewrites), "tolerance": self.tolerance, "gates": self.gates}


def _read(path: Path) -> TargetProfile:
    try:
        raw = tomllib.loads(path.read_text())
        graphs = raw.get("graphs", {})
        profile = TargetProfile(raw["name"], get_backend(raw["backend"]), raw["description"], raw["artifact"],
                                raw["default_quant"], bool(raw["runs_here"]),
                                int(graphs.get("unet_batch", 2)), tuple(graphs.get("rewrites", ())),
                                {k: float(v) for k, v in raw.get("tolerance", {}).items()},
                                {mode: dict(table) for mode, table in raw.get("gates", {}).items()}, path)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise EdgeError(f"{path}: not a valid target profile ({err})") from err
    if profile.unet_batch != SUPPORTED_UNET_BATCH:
        raise EdgeError(f"{path}: unet_batch {profile.unet_batch} is not supported (only {SUPPORTED_UNET_BATCH})")
    modes = set(profile.quant_modes)
    if profile.default_quant not in modes or set(profile.tolerance) - modes or set(profile.gates) - modes:
        raise EdgeError(f"{path}: unknown quant mode: default_quant, [tolerance] keys and [gates.<mode>] tables must "
                        f"name quant modes of backend {profile.backend.name} ({', '.join(profile.quant_modes)})")
    for mode, table in profile.gates.items():
        for metric, value in table.items():
            parse_threshold(metric, value, f"{path} [gates.{mode}]")
    return profile


def targets_dir() -> Path:
    """$EDGE_TARGETS_DIR, else the repository's targets/."""
    return Path(os.environ.get("EDGE_TARGETS_DIR", Path(__file__).resolve().parents[1] / "targets"))


def list_targets() -> list[TargetProfile]:
    return [_read(path) for path in sorted(targets_dir().glob("*.toml"))]


def load_target(name: str) -> TargetProfile:
    path = targets_dir() / f"{name}.toml"
    if not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
        names = ", ".join(t.name for t in list_targets())
        raise EdgeError(f"unknown target '{name}': choose one of {names}")
    return _read(path)
