"""The web target: ONNX graphs onnxruntime-web can run, checked here in onnxruntime's CPU provider."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest

from tests.helpers import REPO, manifest_json, run_check_cli


@pytest.fixture(scope="module")
def web_bundles(compiled):
    return {mode: compiled("web", mode) for mode in ("fp32", "int8")}


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
    # int8 weights are a quarter of fp32 ones; the λ relative-position embeddings (batched constants) stay fp32:
    # 53% of the fp32 UNet on moebius-tiny-trained
    assert int8["report"]["bytes"] < 0.6 * fp32["report"]["bytes"]
    assert any(op.startswith("MatMul x") and op.endswith("(batched)") for op in int8["recipe"]["float_ops"])
    model = onnx.load(web_bundles["int8"] / int8["file"])
    scales = {init.name: init for init in model.graph.initializer}
    conv_weight_scales = [scales[node.input[1]] for node in model.graph.node
                          if node.op_type == "DequantizeLinear" and node.input[1] in scales and len(scales[node.input[1]].dims) == 1
                          and scales[node.input[1]].dims[0] > 1]
    assert conv_weight_scales, "no per-channel weight scales"


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_check_passes_the_profile_gates(web_bundles, tmp_path, mode):
    run = run_check_cli(web_bundles[mode], tmp_path / f"{mode}.html", "--eval", str(REPO / "eval_data"))
    assert run.exit_code == 0, [g for g in run.payload["gates"] if g["status"] == "fail"]
    assert run.payload["ground_truth"]["masked_psnr_db"]["bundle"] > 12
