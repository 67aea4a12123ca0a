"""LiteRT (TFLite): lowering to `.tflite` with litert-torch and ai-edge-quantizer, running it here
with ai-edge-litert's interpreter.

Stages (each takes one object and returns the next):
  PreparedGraph --litert_torch.convert--> fp32 flatbuffer (bytes; cached by graph digest, so every
  quant mode of one graph converts once) --ai-edge-quantizer recipe (calibrated for int8)--> bytes

Quant modes (recipes applied to the fp32 flatbuffer):
  fp32          the converted flatbuffer as is.
  fp16          weights of convolutions and fully connected layers stored as fp16 (FLOAT_CASTING).
  int8-weight   int8 per-channel weights, dequantized to fp32 at load (weight-only).
  int8-dynamic  int8 per-channel weights, activations quantized at run time (dynamic range).
  int8          static int8: per-channel int8 weights and calibrated per-tensor int8 activations for every
                convolution and fully connected layer. Norms, softmax, the λ matmuls and elementwise ops stay
                fp32 (int8 activations there cost ~20 dB on moebius-tiny), and so do the timestep MLP and
                conv_in (STATIC_INT8_FLOAT_MODULES).
                Activation ranges are the min/max over all calibration samples (every timestep), not
                ai-edge-quantizer's default moving average, which follows the first samples' timesteps.
                A recipe (`edge sensitivity --target tflite`) keeps whole modules float on top.
The float islands each mode leaves are counted from the quantized flatbuffer (LoweredGraph.float_ops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from edge.backends.common import graph_digest, strided
from edge.backends.contract import Calibration, LoweredGraph, Program
from edge.backends.tflite.npu import NpuTarget, compile_for_npu, npu_target
from edge.cache import cache_dir, read_cached_bytes, write_cached_bytes
from edge.compile.graphs import PreparedGraph, TensorSpec

QUANT_MODES = {
    "fp32": "the converted flatbuffer as is",
    "fp16": "conv / fully-connected weights stored fp16; compute fp32",
    "int8-weight": "int8 weights per channel, dequantized at load; compute fp32",
    "int8-dynamic": "int8 weights per channel, activations quantized at run time",
    "int8": "static int8: int8 weights per channel and calibrated int8 activations of every conv and FC",
}
MAX_CALIBRATION_SAMPLES = 20  # evenly strided over the recordings, so every timestep stays represented
ALWAYS_FLOAT_MODULES = ("denoiser.time_embedding",)  # never quantized (the timestep MLP)
# kept float in static int8: conv_in's input mixes the noisy latent, the mask and the masked-image latent in one
# per-tensor scale, and `edge sensitivity --target tflite` ranks it first by far at both sizes (all-int8 UNet
# 6.3 -> 9.7 dB on moebius-0.22b, 14 -> 22 dB on moebius-tiny) for 9 KB of weights
STATIC_INT8_FLOAT_MODULES = ("denoiser.conv_in",)
STATIC_INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_2D_TRANSPOSE")
SIGNATURE = "serving_default"
# ai-edge-quantizer 0.10 quantizes tensors over 32 MiB in 2-D chunks and fails to broadcast per-channel
# scales onto them unless the channel axis is the last; see chunked_large_weights.
QUANTIZER_CHUNK_BYTES = 32 * 1024 * 1024


def signature_input_names(count: int) -> list[str]:
    """litert-torch names positional inputs args_0, args_1, ... in the serving signature."""
    return [f"args_{i}" for i in range(count)]


# --- stage 1: fp32 conversion, cached -------------------------------------------------------------

def convert_fp32(graph) -> bytes:
    import litert_torch

    with _quiet_conversion(), torch.no_grad():
        return bytes(litert_torch.convert(graph.module.eval(), graph.example_inputs).model_content())


@contextlib.contextmanager
def _quiet_conversion():
    """litert-torch prints a progress tree on stdout (where --json goes): off, and stray prints to stderr."""
    previous = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if previous is None:
            del os.environ["LITERT_TORCH_SHOW_PROGRESS"]
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = previous


def fp32_flatbuffer(graph) -> tuple[bytes, bool]:
    """(the graph converted to an fp32 flatbuffer, whether it came from $EDGE_CACHE/tflite)."""
    path = cache_dir() / "tflite" / f"{graph.name}-{graph_digest(graph, 'litert-torch')}.tflite"
    cached = read_cached_bytes(path)
    if cached is not None:
        return cached, True
    payload = convert_fp32(graph)
    write_cached_bytes(path, payload)
    return payload, False


# --- stage 2: quantization recipes ----------------------------------------------------------------

def quantize_in_channel_chunks(quantize):
    """Wrap ai-edge-quantizer's uniform_quantize(tensor, params, is_blockwise_quant) so that a per-channel
    tensor over QUANTIZER_CHUNK_BYTES is quantized in slices along its channel axis, each under the size
    where upstream takes its (broken) 2-D chunked path. Same result, element for element."""

    def chunked(tensor_data, quantization_params, is_blockwise_quant=False):
        scale = np.asarray(quantization_params.scale)
        zero_point = np.asarray(quantization_params.zero_point)
        axis = quantization_params.quantized_dimension
        if (is_blockwise_quant or tensor_data.ndim < 2 or tensor_data.nbytes <= QUANTIZER_CHUNK_BYTES
                or scale.size == 1 or axis is None or scale.size != tensor_data.shape[axis]):
            return quantize(tensor_data, quantization_params, is_blockwise_quant)
        channel_shape = [1] * tensor_data.ndim
        channel_shape[axis] = tensor_data.shape[axis]  # scale (C,) -> (1, .., C, .., 1) on the channel axis
        scale, zero_point = scale.reshape(channel_shape), zero_point.reshape(channel_shape)
        pieces = -(-tensor_data.nbytes // QUANTIZER_CHUNK_BYTES) + 1
        quantized = []
        for channels in np.array_split(np.arange(tensor_data.shape[axis]), pieces):
            part = slice(channels[0], channels[-1] + 1)
            params = dataclasses.replace(quantization_params, scale=_take(scale, axis, part),
                                         zero_point=_take(zero_point, axis, part))
            quantized.append(quantize(_take(tensor_data, axis, part), params, False))
        return np.concatenate(quantized, axis=axis)

    return chunked


def _take(array: np.ndarray, axis: int, part: slice) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = part
    return array[tuple(index)]


@contextlib.contextmanager
def chunked_large_weights():
    """While active, ai-edge-quantizer quantizes large per-channel weights through quantize_in_channel_chunks."""
    from ai_edge_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as upstream

    original = upstream.uniform_quantize
    upstream.uniform_quantize = quantize_in_channel_chunks(original)
    try:
        yield
    finally:
        upstream.uniform_quantize = original


def module_scope_regex(root: torch.nn.Module, path: str) -> str:
    """The tensor-name regex of everything litert-torch converts inside module `path` of `root`.

    litert-torch names each tensor by its module stack, one "<class path>_<attribute>" per module with
    containers (ModuleList) left out and their items named by index, e.g. denoiser.down_blocks.0.resnets.1 ->
    "edge.compile.graphs.UNetGraph/edge.models.unet.LambdaUNet_denoiser/edge.models.unet.DownBlock_0/
    edge.models.unet.ResnetBlock_1"; fused ops join several such names with ";". A container path stands
    for each of its items."""
    module, parts = root, [re.escape(_class_path(root))]
    for name in path.split("."):
        module = getattr(module, name) if not name.isdigit() else module[int(name)]
        if not isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
            parts.append(re.escape(f"{_class_path(module)}_{name}"))
    if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)):
        items = "|".join(re.escape(f"{_class_path(item)}_{index}") for index, item in enumerate(module))
        parts.append(f"(?:{items})")
    return "(?:^|;)" + "/".join(parts) + "(?:/|;|$)"


def _class_path(module: torch.nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _has_module(root: torch.nn.Module, path: str) -> bool:
    return path in dict(root.named_modules())


def _recipe(quantizer, quant: str, float_scopes: Sequence[str]) -> None:
    from ai_edge_quantizer import algorithm_manager, qtyping

    ops, algorithms = qtyping.TFLOperationName, algorithm_manager.AlgorithmName
    if quant == "fp16":
        quantizer.add_weight_only_config(".*", ops.ALL_SUPPORTED, 16, algorithm_key=algorithms.FLOAT_CASTING)
    elif quant == "int8-weight":
        quantizer.add_weight_only_config(".*", ops.ALL_SUPPORTED, 8)
    elif quant == "int8-dynamic":
        quantizer.add_dynamic_config(".*", ops.ALL_SUPPORTED, 8)
    elif quant == "int8":
        for op in STATIC_INT8_OPS:
            quantizer.add_static_config(".*", getattr(ops, op), 8, 8)
    for scope in float_scopes:  # added last, so they override ".*" (the latest matching rule wins)
        quantizer.update_quantization_recipe(regex=scope, operation_name=ops.ALL_SUPPORTED,
                                             algorithm_key=algorithms.NO_QUANTIZE)


def kept_float_modules(graph_module: torch.nn.Module, quant: str, float_modules: Sequence[str]) -> list[str]:
    """The modules quant mode `quant` keeps float in this graph: the timestep MLP, conv_in in static int8 (where
    the graph has them) and a recipe's `float_modules`."""
    fixed = (*ALWAYS_FLOAT_MODULES, *(STATIC_INT8_FLOAT_MODULES if quant == "int8" else ()))
    return [m for m in fixed if _has_module(graph_module, m) and m not in float_modules] + list(float_modules)


def float_scopes(graph_module: torch.nn.Module, modules: Sequence[str]) -> list[str]:
    """Tensor-name regexes of `modules` (module paths in graph_module)."""
    return [module_scope_regex(graph_module, m) for m in modules]


def activation_ranges(fp32: bytes, calibration: Sequence[tuple[torch.Tensor, ...]]) -> dict:
    """{tensor name: {"min", "max"}} of every tensor of the fp32 flatbuffer over all calibration samples, from
    LiteRT's C++ profiler (not every intermediate kept in Python: GBs at full size). Min/max over the samples,
    so the range covers every timestep recorded (upstream's default moving average weights the first ones)."""
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    ranges = calibrator.Calibrator(fp32, num_threads=1, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED,
                                   qsv_update_func=qsv_utils.min_max_update)
    samples = [dict(zip(signature_input_names(len(s)), (t.numpy() for t in s), strict=True)) for s in calibration]
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar cannot be turned off
        ranges.calibrate({SIGNATURE: samples}, recipe_manager.RecipeManager())  # the recipe is unused when profiling
    return ranges.get_model_qsvs()


def quantized_flatbuffer(fp32: bytes, quant: str, ranges: dict | None = None, float_scopes: Sequence[str] = ()) -> bytes:
    """Apply quant mode `quant`'s recipe to the fp32 flatbuffer, keeping tensors matching `float_scopes` float
    (static int8 needs `ranges` from activation_ranges)."""
    from ai_edge_quantizer import quantizer as aeq

    if quant == "fp32":
        return fp32
    quantizer = aeq.Quantizer(fp32)
    _recipe(quantizer, quant, float_scopes)
    if quantizer.need_calibration and ranges is None:
        raise ValueError(f"quant mode {quant} needs activation ranges")
    with chunked_large_weights():
        result = quantizer.quantize(ranges if quantizer.need_calibration else None,
                                    enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


# --- what the flatbuffer holds --------------------------------------------------------------------

def op_histogram(payload: bytes) -> Counter:
    """Builtin op name -> count over every subgraph of a .tflite flatbuffer."""
    return Counter(name for name, _ in _ops(payload))


def _ops(payload: bytes) -> list[tuple[str, bool]]:
    """(builtin op name, whether it computes in floating point: float output and no integer weight or
    activation among its inputs; a dynamic-range op has a float output but int8 weights) for every op."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(payload, 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    float_types = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16}
    integer_types = {schema.TensorType.INT8, schema.TensorType.INT16, schema.TensorType.UINT8}
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    ops = []
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for j in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(j)
            output = subgraph.Tensors(op.Outputs(0)) if op.OutputsLength() else None
            integer_inputs = any(op.Inputs(k) >= 0 and subgraph.Tensors(op.Inputs(k)).Type() in integer_types
                                 for k in range(op.InputsLength()))
            ops.append((names[codes[op.OpcodeIndex()]],
                        output is not None and output.Type() in float_types and not integer_inputs))
    return ops


def float_islands(payload: bytes, quant: str, kept_float: Sequence[str]) -> list[str]:
    """The compute ops left in floating point by a quant mode, as 'OP xN' (DEQUANTIZE and layout ops left out),
    then the modules kept float whole."""
    if quant == "fp32":
        return ["all"]
    bookkeeping = {"DEQUANTIZE", "QUANTIZE", "RESHAPE", "TRANSPOSE", "BROADCAST_TO", "SLICE", "CONCATENATION", "PAD"}
    counts = Counter(name for name, is_float in _ops(payload) if is_float and name not in bookkeeping)
    islands = [f"{name} x{count}" for name, count in counts.most_common()]
    return [*islands, *(f"{module} (kept float)" for module in kept_float)]


def xnnpack_partitions(payload: bytes) -> int:
    """How many XNNPACK delegate nodes the interpreter's default CPU delegate makes of the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=payload, num_threads=1)
    interpreter.allocate_tensors()
    return sum(1 for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE")


# --- the backend ----------------------------------------------------------------------------------

class TfliteBackend:
    name = "tflite"
    quant_modes = QUANT_MODES
    options: dict[str, tuple[str, ...]] = {}  # no target options (--npu is a stage of its own: npu_target / for_npu)

    def lower(self, graph: PreparedGraph, quant: str, calibration: Calibration, float_modules: tuple[str, ...] = (),
              options: Mapping[str, str] | None = None) -> LoweredGraph:
        started = time.perf_counter()
        fp32, cached = fp32_flatbuffer(graph)
        converted = time.perf_counter()
        calibration = strided(calibration, MAX_CALIBRATION_SAMPLES) if quant == "int8" else []
        ranges = activation_ranges(fp32, calibration) if calibration else None
        kept_float = kept_float_modules(graph.module, quant, float_modules)
        payload = quantized_flatbuffer(fp32, quant, ranges, float_scopes(graph.module, kept_float))
        ops = op_histogram(payload)
        report = {"partitions": xnnpack_partitions(payload), "ops": sum(ops.values()),
                  "op_histogram": dict(ops.most_common()),
                  "fp32_conversion": "cached" if cached else f"{converted - started:.1f} s",
                  "calibration_samples": len(calibration)}
        return LoweredGraph(graph.name, payload, float_islands(payload, quant, kept_float), report)

    def simulator(self, graph: PreparedGraph, quant: str, calibration: Calibration):
        """float_modules -> the graph quantized as `lower` would, keeping those modules float, run in LiteRT here
        (the real quantizer and kernels, not a simulation). Converts and calibrates once."""
        fp32, _ = fp32_flatbuffer(graph)
        ranges = activation_ranges(fp32, strided(calibration, MAX_CALIBRATION_SAMPLES)) if quant == "int8" else None
        return lambda float_modules: _program(quantized_flatbuffer(
            fp32, quant, ranges, float_scopes(graph.module, kept_float_modules(graph.module, quant, float_modules))))

    def npu_target(self, soc: str) -> NpuTarget:
        """The vendor target for SOC, checked before any work by compiling a one-op model with its plugin."""
        npu = npu_target(soc)
        spec = (TensorSpec("x", (1, 8)),)
        one_op = PreparedGraph("relu", torch.nn.ReLU(), (torch.zeros(1, 8),), spec, spec)
        compile_for_npu(convert_fp32(one_op), npu)
        return npu

    def for_npu(self, lowered: LoweredGraph, npu: NpuTarget) -> LoweredGraph:
        started = time.perf_counter()
        payload = compile_for_npu(lowered.payload, npu)
        report = {**lowered.report, "npu": {**npu.to_json(), "seconds": round(time.perf_counter() - started, 1)}}
        return LoweredGraph(lowered.name, payload, lowered.float_ops, report)

    def load(self, path: Path) -> Program:
        return _program(path)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"torch": torch.__version__, **{p: version(p) for p in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")}}


def _program(model: Path | bytes) -> Program:
    """A .tflite file or flatbuffer as a callable on torch tensors, through its serving signature."""
    from ai_edge_litert.interpreter import Interpreter

    source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    runner = Interpreter(**source, num_threads=torch.get_num_threads()).get_signature_runner(SIGNATURE)
    inputs, (output_name, output) = runner.get_input_details(), next(iter(runner.get_output_details().items()))

    def run(*tensors: torch.Tensor) -> torch.Tensor:
        names = signature_input_names(len(tensors))
        feed = {name: _to_runtime(t.detach().numpy(), inputs[name]) for name, t in zip(names, tensors, strict=True)}
        return torch.from_numpy(_from_runtime(runner(**feed)[output_name], output).copy())

    return run


def _to_runtime(value: np.ndarray, detail: dict) -> np.ndarray:
    """A float input as the signature takes it: quantized with the input's scale and zero point where integer."""
    if detail["dtype"] == np.float32:
        return value.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(value / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def _from_runtime(value: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return value
    scale, zero_point = detail["quantization"]
    return (value.astype(np.float32) - zero_point) * scale


BACKEND = TfliteBackend()
