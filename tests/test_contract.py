"""The backend contract, for every target profile in targets/ and every quant mode its backend declares.

A new target (one profile + one backend module or package) is picked up here by itself: its tiny bundle is
compiled once per session (shared with the backend's own tests) and must be a bundle an app can trust:
the manifest validates, every file it reads is hashed, the programs take and give the manifest's names and
shapes, `edge verify` passes, and where the runtime exists here the whole inpaint stays within the profile's
end-to-end tolerance of the fp32 torch pipeline.
"""

from __future__ import annotations

import pytest

from edge.backends import get_backend
from edge.backends.contract import Backend, HasNumericsProxy, InspectsPrograms
from edge.bundle.bundle import open_bundle
from edge.bundle.verify import verify_bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.targets import list_targets
from tests.helpers import inpaint_against_torch, manifest_json

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
def test_bundle_keeps_the_contract(compiled, tiny_unet, tiny_vae, pipeline_case, target, quant):
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
    _, error = inpaint_against_torch(bundle, tiny_unet, tiny_vae, pipeline_case)
    assert error <= profile.tolerance[quant]
