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
The timestep MLP (time_embedding) stays fp32 in every mode: its error would shift every block. A
mixed-precision recipe (`edge compile --recipe`) names more modules to keep fp32.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from edge.backends import LoweredGraph, Program
from edge.errors import EdgeError

QUANT_MODES = ("fp32", "int8", "int8-dynamic")
MAX_CALIBRATION_SAMPLES = 20  # evenly strided over the recordings, so every timestep stays represented
ALWAYS_FLOAT_MODULES = ("denoiser.time_embedding",)  # never quantized


def _quantizer(quant: str, float_modules: tuple[str, ...]):
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
    keep_float = (*ALWAYS_FLOAT_MODULES, *float_modules)
    quantizer.set_filter_function(lambda node: not _inside_any(node, keep_float))
    return quantizer


def _inside_any(node: torch.fx.Node, modules: tuple[str, ...]) -> bool:
    """Whether the node was traced inside one of the modules (dotted paths in the graph module)."""
    paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return any(path == module or path.startswith(module + ".") for path in paths for module in modules)


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


def _exported(graph) -> torch.export.ExportedProgram:
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    return constant_prop_pass(torch.export.export(graph.module, graph.example_inputs, strict=False))


def _quantized(program: torch.export.ExportedProgram, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]],
               float_modules: tuple[str, ...]) -> torch.fx.GraphModule:
    """PT2E: annotate, observe the calibration samples, convert. The result runs in torch (reference q/dq)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    observed = prepare_pt2e(program.module(), _quantizer(quant, float_modules))
    with torch.no_grad():
        for sample in calibration:  # dynamic mode needs one pass too: weight observers
            observed(*sample)
    return convert_pt2e(observed)


def _strided(calibration: Sequence[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
    stride = max(1, -(-len(calibration) // MAX_CALIBRATION_SAMPLES))
    return list(calibration)[::stride]


def _check_quant(quant: str) -> None:
    if quant not in QUANT_MODES:
        raise EdgeError(f"xnnpack has no quant mode '{quant}': choose one of {', '.join(QUANT_MODES)}")


class XnnpackBackend:
    name = "xnnpack"
    options: dict[str, tuple[str, ...]] = {}  # no target options

    def lower(self, graph, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]],
              float_modules: tuple[str, ...] = (), options: Mapping[str, str] | None = None) -> LoweredGraph:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        _check_quant(quant)
        started = time.perf_counter()
        program = _exported(graph)
        calibration = _strided(calibration)
        if quant != "fp32":
            program = torch.export.export(_quantized(program, quant, calibration, tuple(float_modules)),
                                          graph.example_inputs, strict=False)
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

    def simulator(self, graph, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]]):
        """float_modules -> the graph quantized as `lower` would, keeping those modules float, run in torch
        (reference quantize/dequantize kernels: XNNPACK's own differ by rounding). Exports once."""
        _check_quant(quant)
        program, calibration = _exported(graph), _strided(calibration)
        return lambda float_modules: _quantized(program, quant, calibration, tuple(float_modules))

    def load(self, path: Path) -> Program:
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(Path(path)).load_method("forward")

        def run(*tensors: torch.Tensor) -> torch.Tensor:
            return method.execute([t.contiguous() for t in tensors])[0]

        return run

    def set_threads(self, threads: int) -> None:
        """Size ExecuTorch's shared thread pool (XNNPACK runs on it) for the programs loaded from now on."""
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)

    def op_profile(self, path: Path, inputs: Sequence[torch.Tensor], runs: int) -> dict:
        """Top ops by time (edge.etdump) over `runs` calls after one warm-up, from an ETDump of this process."""
        import tempfile

        from executorch.runtime import Runtime

        from edge.etdump import op_breakdown

        program = Runtime.get().load_program(Path(path), enable_etdump=True, debug_buffer_size=0)
        method = program.load_method("forward")
        tensors = [t.contiguous() for t in inputs]
        method.execute(tensors)  # warm-up: XNNPACK packs weights on the first call
        with tempfile.TemporaryDirectory() as folder:
            program.write_etdump_result_to_file(f"{folder}/warmup.etdp", f"{folder}/debug.bin")  # drops the warm-up
            for _ in range(runs):
                method.execute(tensors)
            program.write_etdump_result_to_file(f"{folder}/runs.etdp", f"{folder}/debug.bin")
            return op_breakdown(Path(f"{folder}/runs.etdp"))

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"torch": torch.__version__, "executorch": version("executorch")}


BACKEND = XnnpackBackend()
