"""The web target: ONNX graphs onnxruntime-web can run, checked here in onnxruntime's CPU provider."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from edge.cli import app
from edge.inpaint import bundle_source
from edge.pipeline.loop import inpaint_tensors, model_inputs, start_noise
from edge.pipeline.pictures import open_picture, prepare_pair
from edge.serve import DemoServer
from tests.helpers import REPO, manifest_json, rewrite_manifest, run_check_cli


@pytest.fixture(scope="module")
def web_bundles(compiled):
    return {mode: compiled("web", mode) for mode in ("fp32", "fp16", "int8", "int4")}


def test_graphs_are_checked_onnx_with_the_manifests_names_and_static_shapes(web_bundles):
    manifest = manifest_json(web_bundles["fp32"])
    for name, graph in manifest["graphs"].items():
        model = onnx.load(web_bundles["fp32"] / graph["file"])
        onnx.checker.check_model(model, full_check=True)
        assert {o.domain: o.version for o in model.opset_import}[""] == 18
        session = ort.InferenceSession(str(web_bundles["fp32"] / graph["file"]), providers=["CPUExecutionProvider"])
        assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
            (spec["name"], spec["shape"], "tensor(float)") for spec in graph["inputs"]], name
        assert [(o.name, o.shape) for o in session.get_outputs()] == [(s["name"], s["shape"]) for s in graph["outputs"]]


def test_int8_is_qdq_with_per_channel_weights_and_batched_matmuls_float(web_bundles):
    fp32, int8 = (manifest_json(web_bundles[mode])["graphs"]["unet"] for mode in ("fp32", "int8"))
    ops = int8["report"]["ops"]
    assert ops["QuantizeLinear"] > 100 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    # int8 weights are a quarter of fp32 ones; the λ relative-position embeddings (batched constants) stay float,
    # stored in float16: 39% of the fp32 UNet on moebius-tiny-trained
    assert int8["report"]["bytes"] < 0.45 * fp32["report"]["bytes"]
    assert any(op.startswith("MatMul x") and op.endswith("(batched)") for op in int8["recipe"]["float_ops"])
    model = onnx.load(web_bundles["int8"] / int8["file"])
    stored_float16 = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16}
    casts = [node for node in model.graph.node if node.op_type == "Cast" and node.input[0] in stored_float16]
    batched_inputs = {name for node in model.graph.node if node.op_type == "MatMul" for name in node.input}
    assert casts and all(node.output[0] in batched_inputs for node in casts)
    scales = {init.name: init for init in model.graph.initializer}
    conv_weight_scales = [scales[node.input[1]] for node in model.graph.node
                          if node.op_type == "DequantizeLinear" and node.input[1] in scales and len(scales[node.input[1]].dims) == 1
                          and scales[node.input[1]].dims[0] > 1]
    assert conv_weight_scales, "no per-channel weight scales"


def test_fp16_computes_in_float16_between_float32_inputs_and_outputs(web_bundles):
    fp32, fp16 = (manifest_json(web_bundles[mode])["graphs"]["unet"] for mode in ("fp32", "fp16"))
    model = onnx.load(web_bundles["fp16"] / fp16["file"])
    weights = [init for init in model.graph.initializer if len(init.dims) >= 2]
    assert weights and all(init.data_type == onnx.TensorProto.FLOAT16 for init in weights)
    session = ort.InferenceSession(str(web_bundles["fp16"] / fp16["file"]), providers=["CPUExecutionProvider"])
    assert {node.type for node in (*session.get_inputs(), *session.get_outputs())} == {"tensor(float)"}
    assert fp16["report"]["bytes"] < 0.6 * fp32["report"]["bytes"]  # 53% on moebius-tiny-trained


def test_int4_stores_weights_in_blocks_that_onnxruntime_folds_to_float32_as_it_loads(web_bundles, tmp_path):
    for graph, code_type in (("unet", onnx.TensorProto.INT4), ("decoder", onnx.TensorProto.INT4),
                             ("encoder", onnx.TensorProto.INT8)):  # the encoder's codes are 8-bit
        path = web_bundles["int4"] / f"{graph}.onnx"
        model = onnx.load(path)
        assert {opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")} == {21}
        initializers = {init.name: init for init in model.graph.initializer}
        expanded = {node.output[0] for node in model.graph.node if node.name.endswith(".expand")}
        weights = {node.input[1] for node in model.graph.node if node.op_type in ("Conv", "Gemm")}
        assert expanded and {initializers[f"{name}.codes"].data_type for name in expanded} == {code_type}
        # every Conv/Gemm weight is stored in codes, but those whose input channels blocks of 32 do not divide
        # (depthwise and position convs, a first conv over 3 or 9 channels): they stay float32
        for name in weights - expanded:
            assert initializers[name].data_type == onnx.TensorProto.FLOAT and initializers[name].dims[1] % 32, name
        # told to (as WebBackend.load and the page do), onnxruntime folds every expansion into a float32 weight when
        # it creates the session: nothing of it runs
        options = ort.SessionOptions()
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        options.optimized_model_filepath = str(tmp_path / f"{graph}.optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
        assert not [node for node in optimized.graph.node if node.op_type in ("DequantizeLinear", "Cast")]
        assert not [init for init in optimized.graph.initializer if init.data_type == code_type]
    # the stored weights are the fp32 graph's within 4-bit rounding: the largest weight back from its codes
    fp32 = {init.name: init for init in onnx.load(web_bundles["fp32"] / "unet.onnx").graph.initializer}
    int4 = {init.name: init for init in onnx.load(web_bundles["int4"] / "unet.onnx").graph.initializer}
    name = max((key.removesuffix(".codes") for key in int4 if key.endswith(".codes")),
               key=lambda key: np.prod(int4[f"{key}.codes"].dims))
    codes = onnx.numpy_helper.to_array(int4[f"{name}.codes"]).astype(np.float32)  # (O, C, ...), -8..7
    scales = onnx.numpy_helper.to_array(int4[f"{name}.scale"]).astype(np.float32)  # (O, C/32, ...)
    original = onnx.numpy_helper.to_array(fp32[name])
    restored = codes * np.repeat(scales, 32, axis=1)
    assert codes.min() >= -8 and codes.max() <= 7
    assert 10 * np.log10((original**2).sum() / ((original - restored) ** 2).sum()) > 18  # 21 dB on Gaussian weights
    int4_bytes, fp32_bytes = (manifest_json(web_bundles[mode])["graphs"]["unet"]["report"]["bytes"]
                              for mode in ("int4", "fp32"))
    assert int4_bytes < 0.3 * fp32_bytes  # 27% on moebius-tiny-trained: its depthwise and position convs stay float


@pytest.mark.parametrize("mode", ["fp32", "fp16", "int8", "int4"])
def test_check_passes_the_profile_gates(web_bundles, tmp_path, mode):
    run = run_check_cli(web_bundles[mode], tmp_path / f"{mode}.html", "--eval", str(REPO / "eval_data"))
    assert run.exit_code == 0, [g for g in run.payload["gates"] if g["status"] == "fail"]
    assert run.payload["ground_truth"]["masked_psnr_db"]["bundle"] > 12


def test_step_graph_runs_the_loop_as_the_reference_does(web_bundles):
    """The browser's loop: the UNet, then the bundle's step graph (guidance, DDIM, the next UNet input), the
    latents never leaving the graphs. Here in onnxruntime against the reference loop on the same bundle."""
    bundle = web_bundles["fp32"]
    source = bundle_source(bundle, None, None)
    image, fill = prepare_pair(open_picture(REPO / "eval_data/images/tulips.png"),
                               open_picture(REPO / "eval_data/masks/tulips.png"))
    image_t, mask_t = model_inputs(image, fill, source.image_size)
    noise = start_noise((1, 4, 16, 16), seed=3)
    reference = inpaint_tensors(source.graphs, source.plan, image_t, mask_t, noise)
    step = ort.InferenceSession(str(bundle / manifest_json(bundle)["step_graph"]["file"]),
                                providers=["CPUExecutionProvider"])
    known = torch.cat([reference.trace["mask_latent"], reference.trace["masked_latents"]], dim=1).numpy()
    schedule, guidance = source.plan.schedule, np.float32([source.plan.guidance])

    def advance(latents, predicted, alpha, alpha_next):
        return step.run(None, {"latents": latents, "noise": predicted, "known": known, "guidance": guidance,
                               "alpha": np.float32([alpha]), "alpha_next": np.float32([alpha_next])})

    start = reference.trace["noisy_start"].numpy()
    latents, unet_input = advance(start, np.zeros((2, 4, 16, 16), np.float32), 1.0, 1.0)
    assert np.array_equal(latents, start)  # the identity call that builds the first UNet input
    for i in range(schedule.steps):
        predicted = source.graphs.denoise(torch.from_numpy(unet_input), source.plan.time_features[i : i + 1])
        latents, unet_input = advance(latents, predicted.numpy(), schedule.alphas[i], schedule.alphas_next[i])
    assert np.abs(latents - reference.latents.numpy()).max() < 1e-5


def _serve(bundle: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["serve", str(bundle), "--port", "0"])
    return result.exit_code, result.output


@pytest.mark.parametrize("damage, error", [
    (lambda m: m.update(target="xnnpack", backend="xnnpack"), "is for target xnnpack; the web demo runs web bundles"),
    (lambda m: m.pop("step_graph"), "has no step graph (compiled by an older edge): compile it again"),
    (lambda m: m["step_graph"]["inputs"][0].__setitem__("shape", [1, 4, 8, 8]),
     "manifest 'step_graph' must have edge's sampling-step inputs and outputs at latent_size"),
], ids=["another_target", "no_step_graph", "step_graph_of_another_size"])
def test_serve_refuses_a_bundle_the_demo_cannot_run(web_bundles, tmp_path, damage, error):
    bundle = tmp_path / "bundle"
    shutil.copytree(web_bundles["fp32"], bundle)
    rewrite_manifest(bundle, damage)
    code, output = _serve(bundle)
    assert code == 2 and output.count("error:") == 1 and error in output, output


def test_serve_gives_the_demo_the_bundle_and_isolation_headers_and_nothing_else(web_bundles):
    with DemoServer(web_bundles["fp32"], port=0) as server:
        with urllib.request.urlopen(f"{server.url}bundle/manifest.json") as response:
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert json.loads(response.read())["backend"] == "web"
        with urllib.request.urlopen(f"{server.url}ort/ort.webgpu.bundle.min.mjs") as response:
            assert response.headers["Content-Type"] == "text/javascript"
        with urllib.request.urlopen(server.url) as response:
            assert b"js/app.js" in response.read()
        for path in ("bundle/../../pyproject.toml", "bundle/%2e%2e/golden.safetensors", "../../etc/passwd", "bundle/"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(f"{server.url}{path}")
