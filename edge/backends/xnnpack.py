"""ExecuTorch with the XNNPACK delegate (Android CPU): lowering to `.pte` and running it here.

Stages (each takes one object and returns the next, as in ExecuTorch's own API):
  PreparedGraph --export--> ExportedProgram --constant_prop--> ExportedProgram
  --quantize (PT2E, calibrated)--> ExportedProgram --to_edge_transform_and_lower--> EdgeProgramManager
  --to_executorch--> bytes

Quant modes:
  fp32          everything float.
  int8          static int8: per-channel int8 weights and calibrated per-tensor int8 activations for every
                conv and linear; elementwise ops, norms, softmax and the λ matmuls stay fp32.
  int8-dynamic  int8 weights and activations quantized at run time, for the linear layers (XNNPACK's
                dynamic quantization has no depthwise conv, and its conv path breaks the channels-last
                pass); convolutions stay fp32.
The timestep MLP (time_embedding) stays fp32 in every mode: its error would shift every block.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from edge.backends import LoweredGraph, Program
from edge.errors import EdgeError

QUANT_MODES = ("fp32", "int8", "int8-dynamic")
MAX_CALIBRATION_SAMPLES = 20  # evenly strided over the recordings, so every timestep stays represented
FLOAT_MODULES = ("time_embedding",)  # never quantized


def _quantizer(quant: str):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=quant == "int8-dynamic")
    quantizer = XNNPACKQuantizer()
    ops = (torch.ops.aten.linear.default,) if quant == "int8-dynamic" else (
        torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
    for op in ops:
        quantizer.set_operator_type(op, config)
    quantizer.set_filter_function(_quantizable)
    return quantizer


def _quantizable(node: torch.fx.Node) -> bool:
    stack = node.meta.get("nn_module_stack", {})
    return not any(part in path for path, _ in stack.values() for part in FLOAT_MODULES)


def _float_ops(quant: str) -> list[str]:
    always = ["group_norm (as means)", "layer_norm (as means)", "softmax", "bmm (λ read-out)", "add", "mul",
              "time_embedding"]
    if quant == "fp32":
        return ["all"]
    if quant == "int8-dynamic":
        return ["conv2d", *always]
    return always


def _split_repeated_cat_inputs(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """cat([x, x]) (the first up block joins the last down output with itself) -> cat([x, x * 1]).

    XNNPACK's partitioner counts distinct input nodes and refuses a cat with one; the copy keeps the
    whole graph in one delegate.
    """
    graph = program.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.aten.cat.default:
            continue
        seen, inputs = set(), []
        for value in node.args[0]:
            if value in seen:
                with graph.inserting_before(node):
                    copy = graph.call_function(torch.ops.aten.mul.Tensor, (value, 1.0))
                copy.meta["val"] = value.meta["val"]
                value = copy
            seen.add(value)
            inputs.append(value)
        node.args = (inputs, *node.args[1:])
    program.graph_module.recompile()
    return program


def _op_name(target) -> str:
    text = str(target)  # "<EdgeOpOverload: aten.add.Tensor>: schema = ..."
    return text.removeprefix("<EdgeOpOverload: ").split(">")[0]


class XnnpackBackend:
    name = "xnnpack"

    def lower(self, graph, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]]) -> LoweredGraph:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.exir.passes.constant_prop_pass import constant_prop_pass
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        if quant not in QUANT_MODES:
            raise EdgeError(f"xnnpack has no quant mode '{quant}': choose one of {', '.join(QUANT_MODES)}")
        started = time.perf_counter()
        inputs = graph.example_inputs
        program = constant_prop_pass(torch.export.export(graph.module, inputs, strict=False))
        stride = max(1, -(-len(calibration) // MAX_CALIBRATION_SAMPLES))
        calibration = list(calibration)[::stride]
        if quant != "fp32":
            observed = prepare_pt2e(program.module(), _quantizer(quant))
            with torch.no_grad():
                for sample in calibration:  # dynamic mode needs one pass too: weight observers
                    observed(*sample)
            program = torch.export.export(convert_pt2e(observed), inputs, strict=False)
        program = _split_repeated_cat_inputs(program)
        exported_nodes = sum(1 for n in program.graph.nodes if n.op == "call_function")
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        lowered = edge.exported_program().graph_module.graph
        outside = Counter(_op_name(n.target) for n in lowered.nodes if n.op == "call_function"
                          and "executorch_call_delegate" not in str(n.target) and "getitem" not in str(n.target))
        payload = edge.to_executorch().buffer
        report = {"partitions": sum(1 for n in lowered.nodes if "executorch_call_delegate" in str(n.target)),
                  "ops_outside_delegates": dict(outside), "exported_nodes": exported_nodes,
                  "calibration_samples": len(calibration) if quant != "fp32" else 0,
                  "seconds": round(time.perf_counter() - started, 1)}
        return LoweredGraph(graph.name, payload, _float_ops(quant), report)

    def load(self, path: Path) -> Program:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(Path(path)).load_method("forward")

        def run(*tensors: torch.Tensor) -> torch.Tensor:
            return method.execute([t.contiguous() for t in tensors])[0]

        return run

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"torch": torch.__version__, "executorch": version("executorch")}


BACKEND = XnnpackBackend()
