"""The Vulkan target on moebius-tiny: compiled here (not runnable here), delegated whole, verified
structurally, and checked on its numerics proxy (the prepared graphs in torch), which the check report says
plainly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from edge.backends import get_backend
from edge.cli import app
from edge.compile.graphs import TensorSpec
from edge.compile.stages import PreparedGraph
from edge.errors import EdgeError
from edge.models.weights import file_sha256
from tests.helpers import manifest_json, rewrite_manifest, run_check_cli

runner = CliRunner()


@pytest.fixture(scope="session")
def vulkan_bundle(compiled):
    return compiled("vulkan", "fp16")


def test_every_graph_is_one_vulkan_partition(vulkan_bundle):
    manifest = manifest_json(vulkan_bundle)
    assert manifest["backend"] == "vulkan" and manifest["quant"] == "fp16"
    for name, graph in manifest["graphs"].items():
        report = graph["report"]
        assert report["partitions"] == 1 and report["ops_outside_delegates"] == {}, (name, report)
        assert report["delegated_fraction"] == 1.0 and report["delegated_ops"] > 10
        assert report["numerics_proxy"]["backend"] == "torch"
        assert graph["recipe"]["rewrites"][-1] == "batch-one-convolutions"


def test_verify_checks_structure_without_a_runtime(vulkan_bundle, tmp_path):
    result = runner.invoke(app, ["verify", str(vulkan_bundle), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["self_check"].startswith("structural")
    assert all(g["passed"] and g["delegates"] == 1 for g in payload["graphs"].values())

    broken = tmp_path / "broken"
    shutil.copytree(vulkan_bundle, broken)
    (broken / "unet.pte").write_bytes(b"not a program" * 100)
    digest = file_sha256(broken / "unet.pte")  # hashes fine, content not a program
    rewrite_manifest(broken, lambda manifest: manifest["files"].__setitem__("unet.pte", digest))
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 1 and "FAIL unet: not an ExecuTorch program" in result.stdout


def test_xnnpack_program_is_not_a_vulkan_program(tmp_path):
    linear = torch.nn.Linear(8, 8).eval()
    graph = PreparedGraph("linear", linear, (torch.zeros(1, 8),), (TensorSpec("x", (1, 8)),), (TensorSpec("y", (1, 8)),))
    (tmp_path / "linear.pte").write_bytes(get_backend("xnnpack").lower(graph, "fp32", []).payload)
    report = get_backend("vulkan").inspect(tmp_path / "linear.pte")
    assert not report.passed and "expected VulkanBackend only" in report.problem


def test_check_measures_the_numerics_proxy_and_says_so(vulkan_bundle, tmp_path):
    run = run_check_cli(vulkan_bundle, tmp_path / "report.html")
    assert run.payload["notices"][0].startswith("NUMERICS PROXY: vulkan bundles cannot run here; measured on the same "
                                                "graphs run in torch fp32")
    assert run.payload["evaluation"]["numerics_proxy"]["backend"] == "torch"
    assert run.exit_code == 0, [g for g in run.payload["gates"] if g["status"] == "fail"]
    assert run.payload["metrics"]["unet_sqnr_db"] > 60  # the rewrites keep the maths (batch-one convolutions too)
    assert "NUMERICS PROXY" in run.report.read_text()


def test_bundle_cannot_run_here(vulkan_bundle):
    with pytest.raises(EdgeError, match="Vulkan programs cannot run on this machine"):
        get_backend("vulkan").load(vulkan_bundle / "unet.pte")
    result = runner.invoke(app, ["inpaint", "in.png", "mask.png", "-o", "out.png", "--bundle", str(vulkan_bundle)])
    assert result.exit_code == 2
    graphs = manifest_json(vulkan_bundle)["graphs"]
    assert all(graph["golden_sqnr_db"] is None for graph in graphs.values())  # not run, so no parity claimed


@pytest.mark.parametrize("args, expected", [
    (["--quant", "int8"], "target vulkan has no quant mode 'int8': choose one of fp16, fp32"),
    (["--quant", "fp16", "--npu", "SM8650"], "target vulkan has no NPU compilation (--npu)"),
])
def test_bad_input(tmp_path, args, expected):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["compile", "--target", "vulkan", "--model", "moebius-tiny", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert not out.exists()


def test_batch_one_convolutions_keep_the_maths(tiny_unet):
    from edge.compile.graphs import UNetGraph
    from edge.compile.rewrites import REWRITES, BatchOneConv

    graph = UNetGraph(tiny_unet).eval()
    rewritten = REWRITES["batch-one-convolutions"](graph)
    wrapped = [m for m in rewritten.modules() if isinstance(m, BatchOneConv)]
    assert len(wrapped) == sum(1 for m in graph.modules() if isinstance(m, torch.nn.Conv2d))
    inputs = (torch.randn(2, 9, 16, 16), torch.randn(1, 32))
    with torch.no_grad():
        assert torch.allclose(rewritten(*inputs), graph(*inputs), rtol=0, atol=1e-5)
