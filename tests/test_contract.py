"""The backend contract, for every target profile in targets/ and every quant mode its backend declares.

A new target (one profile + one backend module or package) is picked up here by itself: its tiny bundle is
compiled once per session (shared with the backend's own tests) and must be a bundle an app can trust:
the manifest validates, every file it reads is hashed, the programs take and give the manifest's names and
shapes, `edge verify` passes, and where the runtime exists here the whole inpaint stays within the profile's
end-to-end tolerance of the fp32 torch pipeline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.backends import get_backend
from edge.backends.contract import Backend, HasNumericsProxy, InspectsPrograms
from edge.bundle.bundle import open_bundle
from edge.bundle.verify import verify_bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.targets import list_targets
from tests.helpers import PARENT_CACHE, inpaint_against_torch, manifest_json

TARGETS = {profile.name: profile for profile in list_targets()}
CASES = [(name, mode) for name, profile in TARGETS.items() for mode in profile.quant_modes]


@pytest.mark.parametrize("name", TARGETS)
def test_profile_and_backend_agree(name):
    profile = TARGETS[name]
    backend = get_backend(profile.backend.name)
    assert isinstance(backend, Backend) and backend.name == profile.backend.name
    assert profile.default_quant in backend.quant_modes
    assert set(profile.tolerance) <= set(backend.quant_modes) and set(profile.gates) <= set(backend.quant_modes)
    # a target that cannot run here must still be checkable: structurally, and on another backend's numerics
    assert profile.runs_here or isinstance(backend, InspectsPrograms) and isinstance(backend, HasNumericsProxy)


@pytest.mark.parametrize("target, quant", CASES)
def test_bundle_keeps_the_contract(compiled, trained_unet, trained_vae, pipeline_case, target, quant):
    profile = TARGETS[target]
    path = compiled(target, quant)
    bundle = open_bundle(path)  # validates the manifest and checks every hash
    manifest = bundle.manifest
    assert (manifest.target, manifest.backend, manifest.quant) == (target, profile.backend.name, quant)
    assert manifest.tolerance == profile.tolerance.get(quant)
    raw = manifest_json(path)
    assert raw["schema"] == 1 and raw == manifest.to_json()  # what apps read is exactly what edge reads
    for name in GRAPH_NAMES:
        entry = manifest.graphs[name]
        assert entry.file == f"{name}{profile.artifact}" and entry.recipe.quant == quant
        assert entry.report["bytes"] > 0 and entry.recipe.float_ops
        inputs, output, reference = bundle.golden_case(name)
        assert [tuple(t.shape) for t in inputs] == [spec.shape for spec in entry.inputs]
        assert tuple(output.shape) == entry.outputs[0].shape == tuple(reference.shape)
    result = verify_bundle(bundle, profile.runs_here)
    assert result.ok, result.problems
    if not profile.runs_here:
        assert result.self_check.startswith("structural") and all(g["passed"] for g in result.graphs.values())
        return
    assert result.self_check == "ran"
    compiled_result, reference = inpaint_against_torch(bundle, trained_unet, trained_vae, pipeline_case)
    assert (compiled_result.image01 - reference.image01).abs().max().item() <= profile.tolerance[quant]


TOY_BACKEND = '''"""A target planted by tests/test_contract.py: the prepared graph as a torch.export program, run by torch."""
import io

import torch

from edge.backends.contract import LoweredGraph


class ExportedProgramBackend:
    name = "toy_target.backend"
    quant_modes = {"fp32": "the exported program as it is"}
    options = {}

    def lower(self, graph, quant, calibration, float_modules=(), options=None):
        buffer = io.BytesIO()
        torch.export.save(torch.export.export(graph.module, graph.example_inputs, strict=False), buffer)
        return LoweredGraph(graph.name, buffer.getvalue(), ["all"], {})

    def load(self, path):
        return torch.export.load(str(path)).module()

    def versions(self):
        return {"torch": torch.__version__}


BACKEND = ExportedProgramBackend()
'''
TOY_PROFILE = """name = "toy"
backend = "toy_target.backend"
description = "torch.export programs run by torch (planted by a test)"
artifact = ".pt2"
default_quant = "fp32"
runs_here = true

[tolerance]
fp32 = 1e-4
"""


def test_a_new_target_is_picked_up_by_itself(tmp_path):
    """A profile and a backend, nothing else: this very file, run on a targets folder holding only them, compiles
    the new target's bundle and holds it to the whole contract."""
    (tmp_path / "toy_target").mkdir()
    (tmp_path / "toy_target" / "__init__.py").write_text("")
    (tmp_path / "toy_target" / "backend.py").write_text(TOY_BACKEND)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "toy.toml").write_text(TOY_PROFILE)
    environment = {**os.environ, "EDGE_TARGETS_DIR": str(tmp_path / "targets"), PARENT_CACHE: os.environ["EDGE_CACHE"],
                   "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for xdist_variable in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        environment.pop(xdist_variable, None)
    done = subprocess.run([sys.executable, "-m", "pytest", __file__, "-k", "not picked_up", "-p", "no:xdist",
                           "-p", "no:cacheprovider", "-rA", "--basetemp", str(tmp_path / "session")],
                          cwd=Path(__file__).parents[1], env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    passed = {line.split("::")[-1] for line in done.stdout.splitlines() if line.startswith("PASSED ")}
    assert passed == {"test_profile_and_backend_agree[toy]", "test_bundle_keeps_the_contract[toy-fp32]"}, \
        done.stdout[-3000:]
