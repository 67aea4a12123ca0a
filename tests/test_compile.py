"""`edge compile` for XNNPACK on moebius-tiny: bundles, manifest, verify, running them, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from edge.bundle.bundle import open_bundle
from edge.cli import app
from edge.targets import load_target
from tests.helpers import REPO, inpaint_against_torch, manifest_json, mlp_graph, quant_modes, rewrite_manifest

runner = CliRunner()


@pytest.mark.parametrize("mode", quant_modes("xnnpack"))
def test_bundle_manifest_describes_everything_an_app_needs(tiny_bundles, mode):
    bundle = open_bundle(tiny_bundles[mode])
    manifest = manifest_json(bundle.path)
    assert manifest["schema"] == 1 and manifest["target"] == "xnnpack" and manifest["quant"] == mode
    assert set(manifest["files"]) == {"encoder.pte", "unet.pte", "decoder.pte", "golden.safetensors", "time_features.f32"}
    assert manifest["sampling"]["scheduler"]["timesteps"] == list(range(900, -1, -50))
    assert manifest["sampling"]["time_features"]["shape"] == [19, 32]
    assert manifest["weights"]["unet"]["sha256"] and not manifest["weights"]["random"]
    assert manifest["graphs"]["unet"]["inputs"] == [{"name": "latent", "shape": [2, 9, 16, 16], "dtype": "float32"},
                                                  {"name": "time_features", "shape": [1, 32], "dtype": "float32"}]
    assert "time_embedding" in manifest["graphs"]["unet"]["recipe"]["float_ops"] or mode == "fp32"
    assert manifest["tools"]["executorch"] == "1.5.1"
    assert manifest["calibration"]["pairs"] == ["astronaut", "chelsea", "coffee"]
    assert manifest["calibration"]["held_out"] == ["rocket"]  # never calibrated on
    plan = bundle.sampling_plan()
    assert plan.time_features.shape == (19, 32) and plan.schedule.steps == 19


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_each_graph_is_one_delegate_partition(tiny_bundles, mode):
    for name, graph in manifest_json(tiny_bundles[mode])["graphs"].items():
        assert graph["report"]["partitions"] == 1, name
        # only layout copies at the graph boundary may stay outside the delegate
        assert all(op.startswith("dim_order_ops.") for op in graph["report"]["ops_outside_delegates"]), name


def test_fp32_bundle_reproduces_the_torch_pipelines_latents(tiny_bundles, trained_unet, trained_vae, pipeline_case):
    # every mode's end-to-end bound on the picture is the contract test's (tests/test_contract.py); fp32 also
    # keeps the final latents, before the decoder, within 1e-3 of their scale (the bound the published case had)
    compiled, reference = inpaint_against_torch(open_bundle(tiny_bundles["fp32"]), trained_unet, trained_vae, pipeline_case)
    assert torch.allclose(compiled.latents, reference.latents, rtol=0, atol=1e-3 * reference.latents.abs().max().item())


def test_quantized_unet_is_smaller(tiny_bundles):
    sizes = {mode: (tiny_bundles[mode] / "unet.pte").stat().st_size for mode in quant_modes("xnnpack")}
    assert sizes["int8"] < 0.5 * sizes["fp32"]
    assert sizes["int8-dynamic"] < sizes["fp32"]
    # 4-bit weights in the linears and 1x1 convs (most of the tiny UNet's weights; 83% at full size)
    assert sizes["int4"] < 0.8 * sizes["int8"]


def test_int4_bundle_keeps_the_vae_in_int8(tiny_bundles):
    # same layout as the int8 bundle's VAE (4-bit would shrink it); usually the very same lowering, from the
    # cache, but two workers may lower it at once, and then a scale's last bits may differ
    for name in ("encoder", "decoder"):
        graphs = {mode: manifest_json(tiny_bundles[mode])["graphs"][name] for mode in ("int8", "int4")}
        assert graphs["int4"]["recipe"]["float_ops"] == graphs["int8"]["recipe"]["float_ops"]
        assert graphs["int4"]["report"]["bytes"] == graphs["int8"]["report"]["bytes"], name


def test_a_lowering_is_cached_by_what_it_reads(tmp_path, monkeypatch):
    """A repeated lowering comes from $EDGE_CACHE/xnnpack byte for byte; other calibration samples lower again
    (a damaged entry is edge.cache's to catch: tests/test_cache.py)."""
    from edge.backends.xnnpack import BACKEND

    monkeypatch.setenv("EDGE_CACHE", str(tmp_path))
    graph, samples = mlp_graph(), [(torch.randn(4, 16) * scale,) for scale in (1, 2, 3)]
    first = BACKEND.lower(graph, "int8", samples)
    again = BACKEND.lower(graph, "int8", samples)
    assert (first.report.pop("from_cache"), again.report.pop("from_cache")) == (False, True)
    assert again.payload == first.payload and again.report == first.report and again.float_ops == first.float_ops
    assert not BACKEND.lower(graph, "int8", samples[:2]).report["from_cache"]
    assert len(list((tmp_path / "xnnpack").glob("mlp-int8-*.pte"))) == 2


def test_verify_passes_and_catches_corruption(tiny_bundles, tmp_path):
    result = runner.invoke(app, ["verify", str(tiny_bundles["int8"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["self_check"] == "ran" and set(report["graphs"]) == {"encoder", "unet", "decoder"}
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundles["int8"], broken)
    payload = bytearray((broken / "unet.pte").read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (broken / "unet.pte").write_bytes(bytes(payload))
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 1 and "unet.pte does not match its sha256" in result.stdout


@pytest.mark.parametrize("backend", ["coreml", "os.path"])
def test_a_bundle_does_not_choose_the_code_that_runs_it(tiny_bundles, tmp_path, backend):
    relabelled = tmp_path / "relabelled"
    shutil.copytree(tiny_bundles["fp32"], relabelled)
    # the target stays xnnpack, whose backend runs the bundle or nothing does
    rewrite_manifest(relabelled, lambda manifest: manifest.__setitem__("backend", backend))
    result = runner.invoke(app, ["verify", str(relabelled)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"error: {relabelled}: the manifest says backend '{backend}', target xnnpack is "
                                     "backend 'xnnpack'")


def test_inpaint_runs_a_bundle(tiny_bundles, tmp_path):
    image = REPO / "calib_data" / "images" / "chelsea.png"
    mask = REPO / "calib_data" / "masks" / "chelsea.png"
    out = tmp_path / "filled.png"
    result = runner.invoke(app, ["inpaint", str(image), str(mask), "-o", str(out), "--bundle",
                                 str(tiny_bundles["int8"]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runner"] == "xnnpack int8 bundle"
    filled, original = np.asarray(Image.open(out)), np.asarray(Image.open(image).convert("RGB"))
    assert filled.shape == original.shape
    hole = np.asarray(Image.open(mask)) > 127
    assert np.array_equal(filled[:8], original[:8]) and not hole[:20].any()  # far from the mask: untouched


def test_targets_lists_xnnpack():
    result = runner.invoke(app, ["targets", "--json"])
    assert result.exit_code == 0
    xnnpack = {t["name"]: t for t in json.loads(result.stdout)["targets"]}["xnnpack"]
    assert xnnpack["quant_modes"] == ["fp32", "int8", "int8-dynamic", "int4"] and xnnpack["runs_here"]
    assert load_target("xnnpack").default_quant == "int8"


def test_compile_command_summarises_in_json(compiled, tiny_bundles):
    summary = compiled.summary("xnnpack", "fp32")  # the session's bundles are compiled by `edge compile --json`
    out = tiny_bundles["fp32"]
    assert summary["schema"] == 1 and summary["bundle"] == str(out) and summary["random_weights"] is False
    assert {g: s["partitions"] for g, s in summary["graphs"].items()} == {"encoder": 1, "unet": 1, "decoder": 1}
    assert summary["graphs"]["unet"]["golden_sqnr_db"] > 60
    assert (out / "manifest.json").is_file() and not list(out.parent.glob(f".{out.name}.*"))
