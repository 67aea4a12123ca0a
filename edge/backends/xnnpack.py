"""ExecuTorch with the XNNPACK delegate (Android CPU): lowering to `.pte` and running it here.

Stages (each takes one object and returns the next, as in ExecuTorch's own API):
  PreparedGraph --export--> ExportedProgram --constant_prop--> ExportedProgram
  --quantize (PT2E, calibrated)--> ExportedProgram --to_edge_transform_and_lower--> EdgeProgramManager
  --to_executorch--> bytes
The bytes and the lowering report are cached in $EDGE_CACHE/xnnpack, keyed by everything the lowering reads
(_lowering_key): an int4 bundle's encoder and decoder are its int8 bundle's, lowered once.

Quant modes:
  fp32          everything float.
  int8          static int8: per-channel int8 weights and calibrated per-tensor int8 activations for every
                conv (dense transposed ones included: the decoder's upsamplers) and linear; elementwise ops,
                norms, softmax and the λ matmuls stay fp32. The matmuls' weight operands (the Interactive-λ
                relative-position tables: 6% of the UNet's weights, 57 MB in fp32) are stored int8 with one
                scale per table, and XNNPACK multiplies by them as they are (its F32 x QC8W batch matmul).
  int8-dynamic  int8 weights and activations quantized at run time, for the linear layers (XNNPACK's
                dynamic quantization has no depthwise conv, and its conv path breaks the channels-last
                pass); convolutions stay fp32.
  int4          the UNet as in int8, but every linear and every 1x1 conv (rewritten as a linear over the
                channel axis: 83% of its weights) gets 4-bit weights, one scale per output channel, and
                activations quantized to int8 at run time (XNNPACK's QD8 x QC4W fully connected; its 4-bit
                weights serve fully connected layers only). Per channel, not group-wise: the group-wise
                path (torchao's Int8DynamicActivationIntxWeightConfig, PerGroup) lowers too, but ran 2.5-3.4x
                slower than per channel on a 320-channel block on this x86 CPU (2026-12-05). The encoder and
                decoder are int8: 4-bit would save a few MB of them and cost them 6-14 dB of SQNR.
The timestep MLP (time_embedding) stays fp32 in every mode: its error would shift every block. A
mixed-precision recipe (`edge compile --recipe`) names more modules to keep fp32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from edge.backends import common
from edge.backends.common import (
    count_call_nodes,
    delegation_report,
    executorch_export,
    executorch_versions,
    graph_digest,
    strided,
)
from edge.backends.contract import Calibration, LoweredGraph, Program, Sample
from edge.cache import cache_dir, read_cached_bytes, write_cached_bytes
from edge.compile import rewrites
from edge.compile.graphs import PreparedGraph
from edge.compile.rewrites import pointwise_convs_as_linears

QUANT_MODES = {
    "fp32": "everything float",
    "int8": "static int8: int8 weights per channel and calibrated int8 activations of every conv and linear; "
            "the λ relative-position tables stored int8",
    "int8-dynamic": "int8 weights per channel and run-time-quantized activations of every linear; convs float",
    "int4": "int8, but the UNet's linears and 1x1 convs with 4-bit weights per channel and run-time-quantized "
            "int8 activations",
}
MAX_CALIBRATION_SAMPLES = 20  # evenly strided over the recordings, so every timestep stays represented
ALWAYS_FLOAT_MODULES = ("denoiser.time_embedding",)  # never quantized


def _quantizer(quant: str, float_modules: tuple[str, ...]):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer

    static = get_symmetric_quantization_config(is_per_channel=True)
    dynamic = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)
    four_bit = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True, weight_qmin=-8, weight_qmax=7)
    # conv_transpose2d: the decoder's dense upsamplers (the quantizer skips the UNet's depthwise ones)
    convs = {torch.ops.aten.conv2d.default: static, torch.ops.aten.conv_transpose2d.input: static}
    configs = {"int8": {**convs, torch.ops.aten.linear.default: static},
               "int8-dynamic": {torch.ops.aten.linear.default: dynamic},
               "int4": {**convs, torch.ops.aten.linear.default: four_bit}}[quant]
    quantizer = XNNPACKQuantizer()
    for op, config in configs.items():
        quantizer.set_operator_type(op, config)
    keep_float = (*ALWAYS_FLOAT_MODULES, *float_modules)
    quantizer.set_filter_function(lambda node: not _inside_any(node, keep_float))
    if quant == "int8-dynamic":
        return quantizer
    return ComposableQuantizer([quantizer, _bmm_weight_quantizer(keep_float)])


def _bmm_weight_quantizer(keep_float: tuple[str, ...]):
    """A PT2E quantizer that stores each batch matmul's weight operand as int8 with one symmetric scale.

    The converted graph reads the operand through `dequantize_per_tensor`, which the XNNPACK delegate takes into
    the batch matmul (F32 activations x QC8W weights).
    """
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec, Quantizer

    spec = QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_tensor_symmetric,
                            observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))

    class BmmWeightQuantizer(Quantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            weights = dict(model.named_parameters())  # not the constants that constant propagation folded
            for node in model.graph.nodes:
                if node.target != torch.ops.aten.bmm.default or _inside_any(node, keep_float):
                    continue
                operand = node.args[1]
                if operand.op == "get_attr" and operand.target in weights:
                    node.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={operand: spec}, _annotated=True)
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            pass

    return BmmWeightQuantizer()


def _inside_any(node: torch.fx.Node, modules: tuple[str, ...]) -> bool:
    """Whether the node was traced inside one of the modules (dotted paths in the graph module)."""
    paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return any(path == module or path.startswith(module + ".") for path in paths for module in modules)


def _float_ops(quant: str) -> list[str]:
    always = ["group_norm (as means)", "layer_norm (as means)", "softmax", "bmm (λ read-out)", "add", "mul",
              "depthwise conv_transpose2d (the UNet's nearest upsampling)", "time_embedding"]
    if quant == "fp32":
        return ["all"]
    if quant == "int8-dynamic":
        return ["conv2d", *always]
    return always


def _graph_mode(graph: PreparedGraph, quant: str) -> str:
    """The mode one graph is quantized in: int4 is the UNet's; the VAE graphs of an int4 bundle are int8."""
    return "int8" if quant == "int4" and graph.name != "unet" else quant


def _exported(graph: PreparedGraph, quant: str) -> torch.export.ExportedProgram:
    """The graph as its mode lowers it: int4 first turns the 1x1 convs into linears (exact)."""
    if quant == "int4":
        graph = dataclasses.replace(graph, module=pointwise_convs_as_linears(graph.module))
    return executorch_export(graph)


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


def _quantized(program: torch.export.ExportedProgram, quant: str, calibration: Calibration,
               float_modules: tuple[str, ...]) -> torch.fx.GraphModule:
    """PT2E: annotate, observe the calibration samples, convert. The result runs in torch (reference q/dq)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    observed = prepare_pt2e(program.module(), _quantizer(quant, float_modules))
    with torch.no_grad():
        for sample in calibration:  # dynamic mode needs one pass too: weight observers
            observed(*sample)
    return convert_pt2e(observed)


def _lowered(graph: PreparedGraph, quant: str, calibration: list[Sample],
             float_modules: tuple[str, ...]) -> tuple[bytes, dict]:
    """(the .pte bytes, the lowering report) of one graph in its graph mode."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = _exported(graph, quant)
    if quant != "fp32":
        program = torch.export.export(_quantized(program, quant, calibration, float_modules),
                                      graph.example_inputs, strict=False)
    program = _split_repeated_cat_inputs(program)
    exported_nodes = count_call_nodes(program)
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    report = delegation_report(edge)
    report.update({"exported_nodes": exported_nodes, "calibration_samples": len(calibration)})
    return edge.to_executorch().buffer, report


# the code that decides a lowering besides the libraries: the quantizer tables here, the export, the rewrites
LOWERING_CODE = (Path(__file__), Path(common.__file__), Path(rewrites.__file__))


def _lowering_key(graph: PreparedGraph, quant: str, calibration: list[Sample], float_modules: tuple[str, ...]) -> str:
    """What a lowering reads: the graph (structure, weights, shapes, torch/executorch/torchao versions), its graph
    mode, the calibration samples it observes, the modules kept float, and edge's lowering code."""
    digest = hashlib.sha256(graph_digest(graph, "executorch", "torchao").encode())
    digest.update(json.dumps([quant, sorted(float_modules)]).encode())
    for source in LOWERING_CODE:
        digest.update(source.read_bytes())
    for sample in calibration:
        for tensor in sample:
            digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


class XnnpackBackend:
    name = "xnnpack"
    quant_modes = QUANT_MODES
    options: dict[str, tuple[str, ...]] = {}  # no target options

    def lower(self, graph: PreparedGraph, quant: str, calibration: Calibration, float_modules: tuple[str, ...] = (),
              options: Mapping[str, str] | None = None) -> LoweredGraph:
        """The graph lowered in its graph mode, from $EDGE_CACHE/xnnpack when that lowering was done before
        (report["from_cache"] says which)."""
        quant, float_modules = _graph_mode(graph, quant), tuple(float_modules)
        calibration = strided(calibration, MAX_CALIBRATION_SAMPLES) if quant != "fp32" else []
        entry = cache_dir() / "xnnpack" / f"{graph.name}-{quant}-{_lowering_key(graph, quant, calibration, float_modules)}"
        program_file, report_file = entry.with_suffix(".pte"), entry.with_suffix(".json")
        payload, report = read_cached_bytes(program_file), read_cached_bytes(report_file)
        if payload is not None and report is not None:
            return LoweredGraph(graph.name, payload, _float_ops(quant), {**json.loads(report), "from_cache": True})
        payload, report = _lowered(graph, quant, calibration, float_modules)
        write_cached_bytes(program_file, payload)
        write_cached_bytes(report_file, json.dumps(report).encode())
        return LoweredGraph(graph.name, payload, _float_ops(quant), {**report, "from_cache": False})

    def simulator(self, graph: PreparedGraph, quant: str, calibration: Calibration):
        """float_modules -> the graph quantized as `lower` would, keeping those modules float, run in torch
        (reference quantize/dequantize kernels: XNNPACK's own differ by rounding). Exports once."""
        quant = _graph_mode(graph, quant)
        program, calibration = _exported(graph, quant), strided(calibration, MAX_CALIBRATION_SAMPLES)
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
        """Top ops by time (edge.device.etdump) over `runs` calls after one warm-up, from an ETDump of this process."""
        import tempfile

        from executorch.runtime import Runtime

        from edge.device.etdump import op_breakdown

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
        return executorch_versions()


BACKEND = XnnpackBackend()
