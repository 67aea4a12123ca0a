"""Helpers the tests call (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.targets import load_target

REPO = Path(__file__).resolve().parents[1]
PARENT_CACHE = "EDGE_TEST_PARENT_CACHE"  # a pytest sub-session started by a test uses this EDGE_CACHE
MOEBIUS_FACTS = Path(os.environ.get("EDGE_MOEBIUS_FACTS", REPO / "tests" / "fixtures" / "moebius"))


def facts_file(name: str) -> Path:
    """One of the Moebius facts (tests/fixtures/moebius/README.md)."""
    path = MOEBIUS_FACTS / name
    if not path.is_file():
        pytest.fail(f"missing fixture {path} (tests/fixtures/moebius, or EDGE_MOEBIUS_FACTS)")
    return path


def quant_modes(target: str) -> tuple[str, ...]:
    """The quant modes the target's backend declares (the one place they are stated)."""
    return load_target(target).quant_modes


def manifest_json(bundle: Path) -> dict:
    """manifest.json as an app reads it: plain JSON, no edge types."""
    return json.loads((Path(bundle) / "manifest.json").read_text())


def rewrite_manifest(bundle: Path, edit: Callable[[dict], None]) -> None:
    """Edit manifest.json as someone with write access to the bundle could, updating manifest.sha256 to match:
    what reaches the checks behind the manifest's digest."""
    manifest = manifest_json(bundle)
    edit(manifest)
    payload = (json.dumps(manifest) + "\n").encode()
    (Path(bundle) / "manifest.json").write_bytes(payload)
    (Path(bundle) / "manifest.sha256").write_text(f"{hashlib.sha256(payload).hexdigest()}  manifest.json\n")


def mlp_graph():
    """A two-layer MLP as a PreparedGraph (4x16 in, 4x8 out): a graph every backend lowers in seconds."""
    import torch

    from edge.compile.graphs import PreparedGraph, TensorSpec

    mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    return PreparedGraph("mlp", mlp, (torch.randn(4, 16),), (TensorSpec("x", (4, 16)),), (TensorSpec("y", (4, 8)),))


def inpaint_against_torch(bundle, unet, vae, pipeline_case):
    """The bundle's inpaint of the pipeline case's inputs (its own sampling plan) and the torch pipeline's with
    the same weights, inputs and start noise."""
    from edge.bundle.runner import BundleGraphs
    from edge.compile.graphs import build_graphs
    from edge.models import get_preset
    from edge.pipeline.loop import TorchGraphs, inpaint_tensors

    plan = bundle.sampling_plan()
    args = (pipeline_case["input.image"], pipeline_case["input.mask"], pipeline_case["input.noise"])
    reference = inpaint_tensors(TorchGraphs(build_graphs(get_preset(bundle.manifest.model), unet, vae)), plan, *args)
    return inpaint_tensors(BundleGraphs(bundle), plan, *args), reference


@dataclass
class CheckRun:
    exit_code: int
    payload: dict
    report: Path


def run_check_cli(bundle: Path, report: Path, *extra: str) -> CheckRun:
    from typer.testing import CliRunner

    from edge.cli import app

    result = CliRunner().invoke(app, ["check", str(bundle), "--report", str(report), "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    return CheckRun(result.exit_code, json.loads(result.stdout), report)
