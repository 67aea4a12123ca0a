"""Core ML (Apple Neural Engine): lowering to `.mlpackage` with coremltools, run here by edge's interpreter.

Stages (each takes one object and returns the next):
  PreparedGraph --export + core-ATen decompositions--> ExportedProgram
  --ct.convert (mlprogram, iOS 17/18, compute precision)--> MLModel (cached by graph digest: every mode but
  fp32 compresses the same fp16 conversion, so compiling them all converts once)
  --compress (weights: int8 / k-means palettes; activations: int8 from calibration)--> MLModel
  --save--> .mlpackage folder

Quant modes:
  fp32      everything fp32: the reference the interpreter is checked against (not for the Neural Engine).
  fp16      fp16 weights and activations (the Neural Engine's native precision), except the timestep path.
  int8      fp16 activations, int8 per-output-channel symmetric weights (dequantized at load).
  palette6  fp16 activations, 6-bit k-means palettes (64 entries): per tensor on iOS 17, per group of 16
  palette4  output channels on iOS 18; 4-bit (16 entries) likewise.
  w8a8      int8 weights as `int8`, plus int8 activations at the inputs of convs, linears and matmuls,
            their ranges calibrated on the timestep-aware recordings by running the fp16 program in edge's
            interpreter (coremltools calibrates by running Core ML itself, which needs macOS), then inserted
            with coremltools' own quantize/dequantize passes.

The timestep path (every op computed from `time_features` alone: the timestep MLP and each ResNet
block's time projection) computes in fp32 in every mode: (1, F) vectors, free to keep exact, and their
error would shift every block. Its weights (16.4M of the 0.22B) are compressed like every other weight:
kept uncompressed in fp32 they would add 49 MB to the int8 UNet, and measured on moebius-tiny the
difference in UNet SQNR is 0.1 dB.
"""

from __future__ import annotations

import contextlib
import io
import logging
import resource
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from edge.backends.common import graph_digest, strided
from edge.backends.contract import Calibration, LoweredGraph, Program
from edge.cache import cache_dir
from edge.compile.graphs import PreparedGraph
from edge.errors import EdgeError
from edge.files import write_folder_atomically

log = logging.getLogger(__name__)

QUANT_MODES = {
    "fp16": "fp16 weights and activations (the Neural Engine's precision)",
    "fp32": "fp32 everything: the interpreter's reference, not for the Neural Engine",
    "int8": "int8 weights per output channel, fp16 activations",
    "palette6": "6-bit k-means weight palettes, fp16 activations",
    "palette4": "4-bit k-means weight palettes, fp16 activations",
    "w8a8": "int8 weights and calibrated int8 activations at conv, linear and matmul inputs",
}
OPTIONS = {"ios": ("17", "18")}  # --ios: minimum deployment target
DEFAULT_IOS = "17"
TIME_INPUT = "time_features"
# what an app should ask Core ML for: the UNet is the Neural Engine's; the VAE convolutions at full
# resolution have large activations, which the GPU handles with less tiling
COMPUTE_UNITS = {"encoder": "CPU_AND_GPU", "unet": "CPU_AND_NE", "decoder": "CPU_AND_GPU"}
PALETTE_GROUP_SIZE = 16  # output channels sharing one palette (iOS 18)
MAX_CALIBRATION_SAMPLES = 8  # w8a8: evenly strided over the recordings (every timestep region stays represented)
# ops the Neural Engine does not run (they fall back to the CPU/GPU and split the program): from Apple's
# published guidance and coremltools' ANE notes; flagged in the op histogram
NOT_ON_NEURAL_ENGINE = frozenset({"gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "einsum",
                                  "non_zero", "cumsum", "topk", "argsort", "random_normal", "random_uniform",
                                  "while_loop", "cond", "range_1d"})


def _exported(graph: PreparedGraph) -> torch.export.ExportedProgram:
    return torch.export.export(graph.module, graph.example_inputs, strict=False).run_decompositions({})


def _time_only(op, memo: dict[str, bool]) -> bool:
    """Whether the MIL op's non-constant inputs all come from the time_features input (recursively)."""
    if op.name in memo:
        return memo[op.name]
    sources = [var for value in op.inputs.values() for var in (value if isinstance(value, (list, tuple)) else [value])]
    produced = [var.op for var in sources if var.op is not None and var.op.op_type != "const"]
    inputs = [var.name for var in sources if var.op is None]
    result = bool(produced or inputs) and all(name == TIME_INPUT for name in inputs) and all(
        _time_only(producer, memo) for producer in produced)
    memo[op.name] = result
    return result


def _converted(graph: PreparedGraph, fp16: bool, ios: str):
    import coremltools as ct

    precision = ct.precision.FLOAT32
    if fp16:
        memo: dict[str, bool] = {}
        precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: not _time_only(op, memo))
    inputs = [ct.TensorType(name=spec.name, shape=spec.shape, dtype=np.float32) for spec in graph.inputs]
    outputs = [ct.TensorType(name=spec.name, dtype=np.float32) for spec in graph.outputs]
    target = ct.target.iOS18 if ios == "18" else ct.target.iOS17
    return ct.convert(_exported(graph), convert_to="mlprogram", inputs=inputs, outputs=outputs,
                      minimum_deployment_target=target, compute_precision=precision, skip_model_load=True)


def converted_model(graph: PreparedGraph, fp16: bool, ios: str):
    """(the graph converted by coremltools, whether the conversion came from $EDGE_CACHE/coreml). Either way
    the model is the saved package read back, so that a bundle does not depend on the cache's state."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto_to_pymil

    precision = "fp16" if fp16 else "fp32"
    path = cache_dir() / "coreml" / f"{graph.name}-{graph_digest(graph, 'coremltools')}-{precision}-ios{ios}.mlpackage"

    def read_back():
        saved = ct.models.MLModel(str(path), skip_model_load=True)
        spec = saved.get_spec()
        program = milproto_to_pymil.load(spec, spec.specificationVersion, saved.weights_dir)
        return ct.models.MLModel(str(path), skip_model_load=True, mil_program=program)

    if path.is_dir():
        try:
            return read_back(), True
        except Exception as err:  # noqa: BLE001 (coremltools raises many types for a damaged package: all mean "convert again")
            log.warning(f"{path}: damaged cache entry ({type(err).__name__}); converting again")
            shutil.rmtree(path, ignore_errors=True)
    model = _converted(graph, fp16, ios)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_folder_atomically(path, lambda tmp: model.save(str(tmp)))
    except OSError as err:  # the package is read back from the cache: without one, the compile cannot go on
        raise EdgeError(f"{path.parent}: cannot write the Core ML conversion cache ({err.strerror}); "
                        "point EDGE_CACHE at a writable folder") from err
    return read_back(), False


def _time_path_ops(model) -> dict[str, None]:
    """{op name: None} for the timestep path's ops: an OptimizationConfig's way of saying "no activation
    quantization here"."""
    memo: dict[str, bool] = {}
    return {op.name: None for op in model._mil_program.functions["main"].operations
            if op.op_type != "const" and _time_only(op, memo)}


def _int8_weights(model):
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"))
    return cto.linear_quantize_weights(model, config)


def _palettized(model, bits: int, ios: str):
    import coremltools.optimize.coreml as cto

    grouped = {"granularity": "per_grouped_channel", "group_size": PALETTE_GROUP_SIZE} if ios == "18" else {}
    config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=bits, **grouped))
    return cto.palettize_weights(model, config)


def _activation_ranges(model, samples: list[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """{tensor name: {"rmin", "rmax"}} over every non-constant float tensor of the program, by running it in
    edge's interpreter: what coremltools' own calibration collects by running Core ML."""
    from edge.backends.coreml.interpreter import load_package

    ranges: dict[str, dict[str, float]] = {}

    def observe(name: str, value: torch.Tensor) -> None:
        if value.is_floating_point() and value.numel():
            low, high = value.min().item(), value.max().item()
            seen = ranges.setdefault(name, {"rmin": low, "rmax": high})
            seen["rmin"], seen["rmax"] = min(seen["rmin"], low), max(seen["rmax"], high)

    with tempfile.TemporaryDirectory(prefix="edge-coreml-calibration-") as folder:
        package = Path(folder) / "calibrated.mlpackage"
        model.save(str(package))
        runner = load_package(package)
        for sample in samples:
            for name, value in sample.items():
                observe(name, torch.from_numpy(value))
            runner.run(sample, observe=observe)
    return ranges


def _activations_quantized(model, samples: list[dict[str, np.ndarray]]):
    """coremltools' linear_quantize_activations with the calibration statistics from the interpreter."""
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil.frontend.milproto import load as milproto_to_pymil
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models.utils import _apply_graph_pass
    from coremltools.optimize.coreml.experimental._post_training_quantization import (
        _adjust_concat_surrounding_activation_stats,
    )

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"),
                                    op_name_configs=_time_path_ops(model))
    ranges = _activation_ranges(model, samples)
    _adjust_concat_surrounding_activation_stats(_concat_groups(model), ranges)
    passes = []
    for name in ("compression::insert_prefix_quantize_dequantize_pair", "compression::insert_suffix_quantize_dequantize_pair"):
        graph_pass = PASS_REGISTRY[name]
        graph_pass.set_options([PassOption("config", config), PassOption("activation_stats", ranges)])
        passes.append(graph_pass)
    passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
    return _apply_graph_pass(model, passes, spec_version=model.get_spec().specificationVersion,
                             pymil_load_func=milproto_to_pymil.load, skip_model_load=True)


def _concat_groups(model) -> list[list[str]]:
    """Each concat's inputs and output, by tensor name: they must share one quantization range."""
    operations = model._mil_program.functions["main"].operations
    return [[var.name for var in op.values] + [op.outputs[0].name] for op in operations if op.op_type == "concat"]


def _histogram(model) -> dict[str, int]:
    operations = model._mil_program.functions["main"].operations
    return dict(Counter(op.op_type for op in operations).most_common())


def _float_ops(quant: str) -> list[str]:
    if quant == "fp32":
        return ["all"]
    islands = ["timestep path (fp32)"]
    if quant == "w8a8":
        return [*islands, "norms, softmax, elementwise (fp16)"]
    return [*islands, "all other activations (fp16)"]


class CoremlBackend:
    name = "coreml"
    quant_modes = QUANT_MODES
    options = OPTIONS

    def lower(self, graph: PreparedGraph, quant: str, calibration: Calibration, float_modules: tuple[str, ...] = (),
              options: Mapping[str, str] | None = None) -> LoweredGraph:
        ios = (options or {}).get("ios", DEFAULT_IOS)
        if float_modules:
            raise EdgeError("coreml: mixed-precision recipes are not supported yet (they name XNNPACK modules)")
        samples = [{spec.name: t.numpy() for spec, t in zip(graph.inputs, sample)}
                   for sample in strided(calibration, MAX_CALIBRATION_SAMPLES)] if quant == "w8a8" else []
        with contextlib.redirect_stderr(io.StringIO()):  # coremltools' per-pass tqdm bars; edge shows its own progress
            model, cached = converted_model(graph, fp16=quant != "fp32", ios=ios)
            converted_histogram = _histogram(model)
            if quant == "w8a8":
                model = _activations_quantized(model, samples)
            if quant in ("int8", "w8a8"):
                model = _int8_weights(model)
            elif quant.startswith("palette"):
                model = _palettized(model, int(quant.removeprefix("palette")), ios)
        histogram = _histogram(model)
        package = Path(tempfile.mkdtemp(prefix=f"edge-coreml-{graph.name}-", suffix=".mlpackage"))
        model.save(str(package))  # handed over: the bundle writer moves it into the bundle
        report = {"minimum_deployment_target": f"iOS{ios}", "compute_units": COMPUTE_UNITS.get(graph.name, "ALL"),
                  "conversion": "cached" if cached else "converted", "converted_ops": converted_histogram, "ops": histogram,
                  "ops_not_on_neural_engine": {op: n for op, n in histogram.items() if op in NOT_ON_NEURAL_ENGINE},
                  "rank5_tensors": _rank5_count(model), "calibration_samples": len(samples),
                  "process_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}
        return LoweredGraph(graph.name, package, _float_ops(quant), report)

    def load(self, path: Path) -> Program:
        from edge.backends.coreml.interpreter import load_package

        return load_package(Path(path))

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"torch": torch.__version__, "coremltools": version("coremltools"), "runs_here_with": "edge.backends.coreml.interpreter"}


def _rank5_count(model) -> int:
    """Activations of rank >= 5 (constants excluded: iOS 18 palettes are rank-6 lookup tables, not tensors the
    Neural Engine computes on)."""
    operations = model._mil_program.functions["main"].operations
    return sum(1 for op in operations if op.op_type != "const" and not op.op_type.startswith("constexpr_")
               for var in op.outputs if var.rank is not None and var.rank >= 5)


BACKEND = CoremlBackend()
