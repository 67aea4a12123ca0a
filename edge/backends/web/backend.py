"""The web target: ONNX graphs for onnxruntime-web (WebGPU, WASM), run here by onnxruntime's CPU provider.

Stages (each takes one object and returns the next):
  PreparedGraph --torch.onnx.export(dynamo, opset 18, static shapes)--> ONNXProgram --model_proto-->
  ModelProto --(node metadata dropped) onnx.checker--> ModelProto --(int8: quantize_static, QDQ)--> bytes
  (int4: the fp32 bytes --edge.backends.web.int4.store_weights_in_blocks--> bytes)
  (fp16: the same export of the graph in float16, edge.backends.web.backend.Float16Graph)

Quant modes:
  fp32  the exported graph as it is.
  fp16  the graph exported in float16 (weights and compute), float32 inputs and outputs: a Cast at each edge. No
        float32 islands: measured on moebius-tiny-trained, the all-fp16 UNet keeps 59 dB SQNR (the timestep path
        included). onnxruntime-web runs it on WebGPU where the adapter has shader-f16, and on WASM.
  int8  QDQ: int8 weights per output channel for every Conv, Gemm and MatMul with a weight, int8 activations
        calibrated (min/max) on the timestep-aware recordings; everything else (batched matmuls, norms,
        softmax, elementwise) float. The batched MatMuls' constants (the λ relative-position embeddings,
        14.2M values at full size) are stored in float16 and cast to float32 on load: 28 MB less to download.
        QuantizeLinear/DequantizeLinear pairs are what both onnxruntime-web providers run.
  int4  every Conv, Gemm and MatMul weight in 4-bit blocks of 32 with float16 scales (the encoder's in 8 bits),
        folded to float32 when the session loads (edge.backends.web.int4): the smallest download, the fp32
        graph's arithmetic. Opset 21.

Inputs and outputs are float32 with the graph specs' names and static shapes, as in every target, so the
bundle and the loop an app follows are the same. The exporter's per-node metadata (stack traces, scopes) is
dropped: a third of the download. onnxruntime's offline optimizer (basic level, the provider-independent one)
was measured and changes nothing on these graphs (the exporter folds constants already), so it is not run.
The bundle also holds the sampling step as an fp32 graph (`step.onnx`, edge.pipeline.step): the browser runs
it between UNet calls, so the latents stay on the GPU.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.backends.common import strided
from edge.backends.contract import Calibration, LoweredGraph, Program
from edge.backends.web import int4
from edge.compile.graphs import PreparedGraph
from edge.errors import EdgeError

QUANT_MODES = {"fp32": "the exported ONNX graph, fp32 everything",
               "fp16": "float16 weights and compute, float32 inputs and outputs",
               "int8": "QDQ: int8 per-channel weights and calibrated int8 activations of every Conv, MatMul, Gemm",
               "int4": "4-bit block-wise weights of every Conv, MatMul, Gemm (float16 scales), fp32 compute"}
OPSET = 18
MAX_CALIBRATION_SAMPLES = 16
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


class Float16Graph(nn.Module):
    """A graph computed in float16 between float32 inputs and outputs (the bundle's I/O is float32 on every target)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(module).half()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(*(tensor.half() for tensor in inputs)).float()


def export_onnx(graph: PreparedGraph):
    """The graph as an onnx.ModelProto (static shapes, the specs' input and output names), checked."""
    import onnx

    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps on stdout (edge's --json)
        program = torch.onnx.export(graph.module.eval(), graph.example_inputs, dynamo=True, opset_version=OPSET,
                                    input_names=[spec.name for spec in graph.inputs],
                                    output_names=[spec.name for spec in graph.outputs], verbose=False)
    model = program.model_proto
    for node in model.graph.node:  # the exporter's per-node stack traces and scopes: 37% of the UNet's file
        del node.metadata_props[:]
    onnx.checker.check_model(model, full_check=True)
    return model


class _Recordings:
    """onnxruntime's CalibrationDataReader over edge's recorded inputs of one graph."""

    def __init__(self, graph: PreparedGraph, calibration: Calibration):
        self.feeds = iter([{spec.name: tensor.numpy() for spec, tensor in zip(graph.inputs, sample, strict=True)}
                           for sample in calibration])

    def get_next(self):
        return next(self.feeds, None)


def batched_matmuls(model) -> list[str]:
    """MatMuls without a 2-D weight: products of two activations (attention, the λ interactions) and batched
    products with a constant (the λ relative-position embeddings). onnxruntime's QLinearMatMul takes only a
    per-tensor zero point for those, and per-tensor int8 costs them most of their precision: they stay float."""
    matrices = {init.name for init in model.graph.initializer if len(init.dims) == 2}
    return [node.name for node in model.graph.node if node.op_type == "MatMul" and not matrices & set(node.input)]


def quantize_int8(model, graph: PreparedGraph, calibration: Calibration, kept_float: list[str]) -> bytes:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(model.SerializeToString())
        quantize_static(source, target, _Recordings(graph, calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=kept_float,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        return target.read_bytes()


def store_in_float16(payload: bytes, nodes: list[str]) -> bytes:
    """The float constants these nodes read (the λ relative-position embeddings of the batched MatMuls), stored in
    float16 and cast back to float32 as the session loads: half their download, the arithmetic unchanged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(payload)
    initializers = {init.name: init for init in model.graph.initializer}
    constants = {name for node in model.graph.node if node.name in nodes for name in node.input
                 if name in initializers and initializers[name].data_type == TensorProto.FLOAT}
    casts = []
    for name in sorted(constants):
        stored = f"{name}.float16"
        initializers[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializers[name]).astype(np.float16),
                                                            stored))
        casts.append(helper.make_node("Cast", [stored], [name], name=f"{name}.to_float32", to=TensorProto.FLOAT))
    nodes_in_order = [*casts, *model.graph.node]  # each Cast before its readers: the graph stays topologically sorted
    del model.graph.node[:]
    model.graph.node.extend(nodes_in_order)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def op_counts(payload: bytes) -> dict[str, int]:
    import onnx

    return dict(Counter(node.op_type for node in onnx.load_from_string(payload).graph.node).most_common())


class WebBackend:
    name = "web"
    quant_modes = QUANT_MODES
    options: dict[str, tuple[str, ...]] = {}  # no target options

    def lower(self, graph: PreparedGraph, quant: str, calibration: Calibration, float_modules: tuple[str, ...] = (),
              options: Mapping[str, str] | None = None) -> LoweredGraph:
        if float_modules:
            raise EdgeError("web does not take mixed-precision recipes yet")
        calibration = strided(calibration, MAX_CALIBRATION_SAMPLES) if quant == "int8" else []
        if quant == "fp16":
            payload = export_onnx(replace(graph, module=Float16Graph(graph.module))).SerializeToString()
            float_ops = ["all (fp16; fp32 inputs and outputs)"]
        elif quant == "fp32":
            payload = export_onnx(graph).SerializeToString()
            float_ops = ["all (fp32)"]
        elif quant == "int4":
            bits = int4.BITS_BY_GRAPH.get(graph.name, int4.BITS)
            payload, stored = int4.store_weights_in_blocks(export_onnx(graph).SerializeToString(), bits)
            float_ops = [f"all (fp32 compute; {stored} weights stored in {bits} bits, folded to float32 as the session loads)"]
        else:
            model = export_onnx(graph)
            batched = batched_matmuls(model)
            payload = store_in_float16(quantize_int8(model, graph, calibration, batched), batched)
        ops = op_counts(payload)
        if quant == "int8":
            float_ops = sorted(set(ops) - {*QUANTIZED_OPS, "QuantizeLinear", "DequantizeLinear"})
            float_ops += [f"MatMul x{len(batched)} (batched)"] if batched else []
        opset = int4.OPSET if quant == "int4" else OPSET
        report = {"opset": opset, "ops": ops, "bytes": len(payload), "calibration_samples": len(calibration)}
        return LoweredGraph(graph.name, payload, float_ops, report)

    def lower_step(self, step: PreparedGraph) -> bytes:
        return export_onnx(step).SerializeToString()

    def load(self, path: Path) -> Program:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        if int4.FOLD_METADATA[0] in session.get_modelmeta().custom_metadata_map:  # as the page does for int4 bundles
            options = ort.SessionOptions()
            options.add_session_config_entry("session.disable_quant_qdq", "1")  # fold the stored weights to float32
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]

        def run(*tensors: torch.Tensor) -> torch.Tensor:
            feeds = {name: np.ascontiguousarray(tensor.numpy()) for name, tensor in zip(names, tensors, strict=True)}
            return torch.from_numpy(session.run(None, feeds)[0])

        return run

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


BACKEND = WebBackend()
