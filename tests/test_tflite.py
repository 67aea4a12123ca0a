"""The LiteRT target on moebius-tiny: every quant mode compiled (one fp32 conversion per graph), run
with the LiteRT interpreter, checked against the fp32 model with the profile's gates; the quantizer's
large-weight workaround; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge.backends.tflite import backend as tflite
from edge.cache import cache_dir
from edge.cli import app
from edge.compile.graphs import TensorSpec, build_graphs
from edge.compile.recipe import read_recipe
from edge.compile.stages import PreparedGraph
from edge.models import get_preset
from tests.helpers import manifest_json, mlp_graph, quant_modes, run_check_cli

runner = CliRunner()
MODES = quant_modes("tflite")


@pytest.fixture(scope="session")
def tflite_bundles(compiled):
    """moebius-tiny in every LiteRT mode; the fp32 conversion is shared via the cache."""
    return {mode: compiled("tflite", mode) for mode in MODES}


@pytest.fixture(scope="session")
def tflite_checks(tflite_bundles, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite-checks")
    return {mode: run_check_cli(path, folder / f"{mode}.html") for mode, path in tflite_bundles.items()}


def test_each_graph_converts_once_for_all_modes(tflite_bundles):
    conversions = {mode: {name: g["report"]["fp32_conversion"] for name, g in manifest_json(path)["graphs"].items()}
                   for mode, path in tflite_bundles.items()}
    assert all(v.endswith(" s") for v in conversions["fp32"].values()), conversions
    assert all(v == "cached" for mode in MODES[1:] for v in conversions[mode].values()), conversions
    assert len(list((cache_dir() / "tflite").glob("*.tflite"))) == 3


@pytest.mark.parametrize("mode", MODES)
def test_bundle_reports_litert_ops_and_golden_sqnr(tflite_bundles, mode):
    manifest = manifest_json(tflite_bundles[mode])  # verify and the end-to-end bound: tests/test_contract.py
    assert manifest["backend"] == "tflite" and manifest["quant"] == mode
    assert set(manifest["tools"]) >= {"litert-torch", "ai-edge-litert", "ai-edge-quantizer"}
    for name, graph in manifest["graphs"].items():
        assert graph["file"] == f"{name}.tflite" and graph["report"]["partitions"] >= 1
        assert graph["report"]["ops"] == sum(graph["report"]["op_histogram"].values())
    golden = {name: g["golden_sqnr_db"] for name, g in manifest["graphs"].items()}
    floor = {"fp32": 60, "fp16": 40, "int8-weight": 25, "int8-dynamic": 15, "int8": 8}[mode]
    assert min(golden.values()) > floor, golden


@pytest.mark.parametrize("mode", MODES)
def test_check_passes_the_profile_gates(tflite_checks, mode):
    run = tflite_checks[mode]
    failed = [g for g in run.payload["gates"] if g["status"] == "fail"]
    assert run.exit_code == 0 and not failed, failed
    assert {g["metric"] for g in run.payload["gates"] if g["status"] == "pass"} >= {"unet_sqnr_db", "masked_psnr_db"}


def test_quant_modes_trade_size_for_error_in_order(tflite_bundles, tflite_checks):
    sizes = {mode: (path / "unet.tflite").stat().st_size for mode, path in tflite_bundles.items()}
    assert sizes["fp32"] > 1.5 * sizes["fp16"] and sizes["fp16"] > 1.3 * sizes["int8-weight"]
    assert sizes["fp32"] > 2 * sizes["int8"]
    sqnr = {mode: run.payload["metrics"]["unet_sqnr_db"] for mode, run in tflite_checks.items()}
    sqnr = {mode: float("inf") if v == "inf" else v for mode, v in sqnr.items()}
    assert sqnr["fp32"] > sqnr["fp16"] > sqnr["int8-weight"] > sqnr["int8"], sqnr
    assert sqnr["int8-weight"] > sqnr["int8-dynamic"], sqnr


def test_static_int8_records_its_float_islands(tflite_bundles):
    unet = manifest_json(tflite_bundles["int8"])["graphs"]["unet"]
    islands = unet["recipe"]["float_ops"]
    float_ops = dict(entry.split(" x") for entry in islands if " x" in entry)
    for op in ("SOFTMAX", "BATCH_MATMUL", "MEAN", "RSQRT"):
        assert op in float_ops, islands
    assert {"denoiser.time_embedding (kept float)", "denoiser.conv_in (kept float)"} <= set(islands)
    # conv_in (one depthwise and one pointwise conv) stays float, every other convolution runs in int8
    assert float_ops.get("CONV_2D") == "1" and float_ops.get("DEPTHWISE_CONV_2D") == "1", islands
    histogram = unet["report"]["op_histogram"]
    assert histogram["QUANTIZE"] > 0 and histogram["DEQUANTIZE"] > 0 and histogram["CONV_2D"] > 10
    fp16 = " ".join(manifest_json(tflite_bundles["fp16"])["graphs"]["unet"]["recipe"]["float_ops"])
    assert "CONV_2D" in fp16 and "FULLY_CONNECTED" in fp16 and "conv_in" not in fp16  # fp16: compute stays float


def test_quantizer_large_weight_workaround():
    """ai-edge-quantizer 0.10 fails on per-channel conv weights over 32 MiB; the chunked wrapper matches the
    small-tensor path element for element."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as upstream

    weight = np.random.default_rng(0).standard_normal((1024, 3, 3, 1040)).astype(np.float32)  # OHWI, 38 MB
    assert weight.nbytes > tflite.QUANTIZER_CHUNK_BYTES
    scale = (np.abs(weight).reshape(1024, -1).max(axis=1) / 127).astype(np.float32)
    params = qtyping.UniformQuantParams(num_bits=8, quantized_dimension=0, scale=scale,
                                        zero_point=np.zeros(1024, dtype=np.int32), symmetric=True)
    with pytest.raises(ValueError):  # the upstream bug; when this stops raising, drop the workaround
        upstream.uniform_quantize(weight, params)
    chunked = tflite.quantize_in_channel_chunks(upstream.uniform_quantize)(weight, params)
    expected = np.clip(np.round(weight / scale[:, None, None, None]), -127, 127).astype(np.int8)
    assert chunked.dtype == np.int8 and np.array_equal(chunked, expected)


def test_large_conv_quantizes_through_the_backend():
    """A model with one 38 MB conv weight goes through conversion and the int8-weight recipe."""
    conv = torch.nn.Conv2d(1024, 1040, 3, padding=1, bias=False).eval()
    graph = PreparedGraph("big", conv, (torch.randn(1, 1024, 4, 4),), (TensorSpec("x", (1, 1024, 4, 4)),),
                          (TensorSpec("y", (1, 1040, 4, 4)),))
    payload = tflite.quantized_flatbuffer(tflite.convert_fp32(graph), "int8-weight")
    assert len(payload) < conv.weight.numel() * 1.1  # int8: about a quarter of the fp32 weight
    path = cache_dir() / "big-int8-weight.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    x = graph.example_inputs[0]
    with torch.no_grad():
        reference = conv(x)
    error = (tflite.BACKEND.load(path)(x) - reference).abs().max().item()
    assert error < 0.02 * reference.abs().max().item()


def test_targets_lists_tflite():
    result = runner.invoke(app, ["targets", "--json"])
    target = {t["name"]: t for t in json.loads(result.stdout)["targets"]}["tflite"]
    assert target["quant_modes"] == list(MODES) and target["runs_here"] and target["default_quant"] == "int8"


@pytest.mark.parametrize("args, expected", [
    (["--quant", "int4"], "target tflite has no quant mode 'int4': choose one of fp32, fp16, int8-weight, int8-dynamic, int8"),
    (["--quant", "int8", "--npu", "SM0000"], "unknown NPU SoC 'SM0000'"),
    (["--quant", "int8", "--npu", "SM8650"], "SM8650"),
])
def test_bad_input(tmp_path, args, expected):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["compile", "--target", "tflite", "--model", "moebius-tiny", "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]


def test_npu_on_a_target_without_npus(tmp_path):
    result = runner.invoke(app, ["compile", "--target", "xnnpack", "--quant", "fp32", "--model", "moebius-tiny",
                                 "-o", str(tmp_path / "b"), "--npu", "SM8650"])
    assert result.exit_code == 2 and "target xnnpack has no NPU compilation" in result.stderr


def test_activation_ranges_span_every_calibration_sample():
    """Static int8 ranges are min/max over all samples (every timestep), not upstream's moving average, which
    would leave the one wide sample (recorded first or last) mostly clipped."""
    graph = mlp_graph()
    samples = [(torch.randn(4, 16) * scale,) for scale in (1.0, 1.0, 1.0, 1.0, 20.0)]
    ranges = tflite.activation_ranges(tflite.convert_fp32(graph), samples)
    widest = torch.cat([s[0] for s in samples])
    assert ranges["serving_default_args_0"]["max"][0] == pytest.approx(widest.max().item())
    assert ranges["serving_default_args_0"]["min"][0] == pytest.approx(widest.min().item())


def test_module_scope_regex_selects_exactly_that_module(tflite_bundles, tiny_unet, tiny_vae):
    """Module paths (recipes, the timestep MLP) name the tensors litert-torch converted inside them."""
    import re

    from ai_edge_litert import schema_py_generated as schema

    unet_graph = build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae)["unet"].module
    payload = (tflite_bundles["fp32"] / "unet.tflite").read_bytes()
    subgraph = schema.Model.GetRootAsModel(payload, 0).Subgraphs(0)
    names = [subgraph.Tensors(i).Name().decode() for i in range(subgraph.TensorsLength())]
    names = [n for n in names if n.count("UNetGraph/") == 1]  # fused ops join several modules' names: left out

    def matches(path: str) -> set[str]:
        return {n for n in names if re.search(tflite.module_scope_regex(unet_graph, path), n)}

    resnets = matches("denoiser.down_blocks.0.resnets")
    first, second = matches("denoiser.down_blocks.0.resnets.0"), matches("denoiser.down_blocks.0.resnets.1")
    assert first and second and not first & second and resnets == first | second
    assert not resnets & matches("denoiser.down_blocks.0.attentions") and matches("denoiser.conv_in")
    assert all("TimestepEmbedding_time_embedding" in n for n in matches("denoiser.time_embedding"))


SENSITIVITY_ARGS = ["sensitivity", "--target", "tflite", "--model", "moebius-tiny-trained", "--granularity", "block",
                    "--calibration-samples", "4", "--float-fraction", "0.1"]


@pytest.fixture(scope="session")
def tflite_sensitivity(tmp_path_factory, tflite_bundles):
    """`edge sensitivity --target tflite` on the trained tiny model: the real quantizer and interpreter per variant."""
    folder = tmp_path_factory.mktemp("tflite-sensitivity")
    result = runner.invoke(app, [*SENSITIVITY_ARGS, "--threads", "1", "-o", str(folder / "ranking.json"), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), folder / "ranking.recipe.toml"


def test_sensitivity_on_ray_ranks_and_recommends_as_the_serial_run(tflite_sensitivity, tmp_path):
    """The 37 variants on an embedded Ray (one thread per task, as the serial run above): the same numbers."""
    serial, serial_recipe = tflite_sensitivity
    result = runner.invoke(app, [*SENSITIVITY_ARGS, "--ray", "-o", str(tmp_path / "ranking.json"), "--json"])
    assert result.exit_code == 0, result.output
    on_ray = json.loads(result.stdout)
    assert len(on_ray["ranking"]) == 18 and on_ray["ranking"] == serial["ranking"]
    assert on_ray["all_quantized_sqnr_db"] == serial["all_quantized_sqnr_db"]
    assert on_ray["recipe"]["expected"] == serial["recipe"]["expected"]
    assert (tmp_path / "ranking.recipe.toml").read_text() == serial_recipe.read_text()


def test_sensitivity_recipe_compiles_and_raises_the_unet_sqnr(tflite_sensitivity, tflite_bundles, tmp_path):
    payload, recipe_path = tflite_sensitivity
    ranking, quantized = payload["ranking"], payload["all_quantized_sqnr_db"]
    assert payload["target"] == "tflite" and len({row["group"] for row in ranking}) == 18
    gains = [row["gain_db"] for row in ranking]
    assert gains == sorted(gains, reverse=True)
    for row in ranking:  # the gain of keeping a group float: against everything quantized
        assert row["gain_db"] == pytest.approx(row["without_db"] - quantized, abs=0.02)
    recipe = read_recipe(recipe_path)
    float_modules = list(recipe.modules_for("unet"))
    assert recipe.target == "tflite" and float_modules
    assert recipe.expected["unet_sqnr_db"] > payload["all_quantized_sqnr_db"] + 1
    out = tmp_path / "mixed"
    result = runner.invoke(app, ["compile", "--target", "tflite", "--model", "moebius-tiny-trained", "--recipe",
                                 str(recipe_path), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    mixed, plain = manifest_json(out)["graphs"]["unet"], manifest_json(tflite_bundles["int8"])["graphs"]["unet"]
    assert mixed["recipe"]["float_modules"] == float_modules
    assert all(f"{module} (kept float)" in mixed["recipe"]["float_ops"] for module in float_modules)
    assert mixed["golden_sqnr_db"] > plain["golden_sqnr_db"] + 1
    assert (out / "unet.tflite").stat().st_size > (tflite_bundles["int8"] / "unet.tflite").stat().st_size


def test_profile_times_a_litert_bundle_in_python_and_leaves_the_native_runner_to_executorch(tflite_bundles, monkeypatch,
                                                                                            tmp_path):
    """The native runner runs ExecuTorch XNNPACK programs only: with one built, a LiteRT bundle is still profiled
    (Python runtime alone), and asking for the runner on it is one error."""
    import edge.device.native

    monkeypatch.setattr(edge.device.native, "built_runner", lambda abi="host": tmp_path / "edge_runner")
    profile = ["profile", str(tflite_bundles["fp32"]), "--runs", "1", "--warmup", "1", "--cooldown", "0",
               "--inpaint-runs", "0", "--save-dir", str(tmp_path / "profiles")]
    result = runner.invoke(app, [*profile, "--json"])
    assert result.exit_code == 0, result.output
    profiled = json.loads(result.stdout)
    assert list(profiled["graphs"]) == ["encoder", "unet", "decoder"] and "native" not in profiled
    refused = runner.invoke(app, [*profile, "--native"])
    assert refused.exit_code == 2
    assert refused.output.strip() == f"error: {tflite_bundles['fp32']}: --native runs ExecuTorch xnnpack bundles; this one is tflite"
