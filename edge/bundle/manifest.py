"""manifest.json, typed: everything an app needs to run the loop without Python (schema 1).

`Manifest.to_json()` is what the compiler writes; `Manifest.from_json(raw, source)` is what every reader
(edge's commands; web_demo/js/bundle.js and android_demo/core check the same rules) accepts: the
schema version, every key with its type, finite numbers, and every path relative and inside the bundle.
A problem is one EdgeError naming the manifest file and the key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from edge.compile.graphs import GRAPH_NAMES, TensorSpec
from edge.errors import EdgeError
from edge.models import WeightsIdentity
from edge.pipeline.schedule import DDIMSchedule
from edge.pipeline.step import step_graph_specs

SCHEMA = 1
MAX_GUIDANCE = 30.0  # classifier-free guidance a manifest (or `edge inpaint --guidance`) may ask for
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"  # `sha256sum manifest.json` output: the manifest's own integrity (sha256sum -c)
TIME_FEATURES = "time_features.f32"  # (steps, F) float32 little-endian, row i for sampling step i
GOLDEN = "golden.safetensors"


def manifest_sha256(manifest_bytes: bytes) -> str:
    return hashlib.sha256(manifest_bytes).hexdigest()


def manifest_digest_line(manifest_bytes: bytes) -> str:
    """manifest.sha256's content, in `sha256sum` format."""
    return f"{manifest_sha256(manifest_bytes)}  {MANIFEST}\n"


class Fields:
    """Typed reads from one JSON object of a manifest; errors name the file and the key's path."""

    def __init__(self, raw: object, where: str, source: str):
        if not isinstance(raw, dict):
            raise EdgeError(f"{source}: {where or 'the manifest'} is not a JSON object")
        self.raw, self.where, self.source = raw, where, source

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], optional: bool = False, infinite: bool = False):
        if key not in self.raw:
            if optional:
                return None
            raise EdgeError(f"{self.source}: manifest lacks '{self._path(key)}'")
        value = self.raw[key]
        if value is None and optional:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise EdgeError(f"{self.source}: manifest '{self._path(key)}' is {type(value).__name__}, expected {names}")
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value) and not infinite):
            raise EdgeError(f"{self.source}: manifest '{self._path(key)}' is not a finite number")
        return value

    def number(self, key: str, optional: bool = False, infinite: bool = False) -> float | None:
        value = self.get(key, (int, float), optional, infinite)
        return None if value is None else float(value)

    def numbers(self, key: str) -> list[float]:
        values = self.get(key, list)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise EdgeError(f"{self.source}: manifest '{self._path(key)}' must be a list of finite numbers")
        return [float(v) for v in values]

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list)
        if not all(isinstance(v, str) for v in values):
            raise EdgeError(f"{self.source}: manifest '{self._path(key)}' must be a list of strings")
        return values

    def path(self, key: str) -> str:
        return bundle_path(self.get(key, str), self._path(key), self.source)

    def child(self, key: str) -> Fields:
        return Fields(self.get(key, dict), self._path(key), self.source)


def bundle_path(value: str, where: str, source: str) -> str:
    """A file name inside the bundle: relative, normalised, no '..', no backslashes."""
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value or str(path) != value:
        raise EdgeError(f"{source}: manifest '{where}' = {value!r} is not a relative path inside the bundle")
    return value


def _weights(fields: Fields) -> WeightsIdentity:
    return WeightsIdentity(fields.get("source", str), fields.get("sha256", str, optional=True),
                           fields.get("seed", int, optional=True))


@dataclass(frozen=True)
class Weights:
    unet: WeightsIdentity
    vae: WeightsIdentity

    @property
    def random(self) -> bool:
        return self.unet.is_random or self.vae.is_random

    def to_json(self) -> dict:
        return {"unet": self.unet.to_json(), "vae": self.vae.to_json(), "random": self.random}


@dataclass(frozen=True)
class GraphRecipe:
    quant: str
    float_ops: list[str]  # ops the quant mode left in floating point
    float_modules: list[str]  # module paths a mixed-precision recipe kept float
    rewrites: list[str]  # the target's graph rewrites (edge.compile.rewrites)

    def to_json(self) -> dict:
        return {"quant": self.quant, "float_ops": self.float_ops, "float_modules": self.float_modules,
                "rewrites": self.rewrites}


@dataclass(frozen=True)
class GraphEntry:
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    recipe: GraphRecipe
    report: dict  # the backend's lowering report (partitions, ops, seconds, bytes, ...)
    golden_sqnr_db: float | None  # the program's golden output against fp32; None where it cannot run here

    def to_json(self) -> dict:
        return {"file": self.file, "inputs": [s.to_json() for s in self.inputs],
                "outputs": [s.to_json() for s in self.outputs], "recipe": self.recipe.to_json(), "report": self.report,
                "golden_sqnr_db": self.golden_sqnr_db}


@dataclass(frozen=True)
class StepGraph:
    """The sampling step as a graph (edge.pipeline.step.SamplingStep), shipped by backends whose runtime keeps
    tensors on a device between calls (web): the app runs it between UNet calls instead of reading back."""

    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    computes: str = ("next_latents = ddim(latents, noise[0] + guidance * (noise[1] - noise[0]), alpha, alpha_next); "
                     "unet_input = concat(next_latents, known) twice; noise 0 and alpha = alpha_next = 1 give the "
                     "first unet_input")

    def to_json(self) -> dict:
        return {"file": self.file, "inputs": [s.to_json() for s in self.inputs],
                "outputs": [s.to_json() for s in self.outputs], "computes": self.computes}


@dataclass(frozen=True)
class TimeFeatures:
    file: str
    shape: tuple[int, int]  # (steps, F)
    dtype: str = "float32"
    note: str = "row i is the unet's time_features input at sampling step i"

    def to_json(self) -> dict:
        return {"file": self.file, "dtype": self.dtype, "shape": list(self.shape), "note": self.note}


@dataclass(frozen=True)
class Sampling:
    scheduler: DDIMSchedule
    strength: float
    guidance: float
    noise_offset: float
    time_features: TimeFeatures
    unet_batch: tuple[str, ...] = ("uncond", "cond")
    cfg: str = "noise = noise[0] + guidance * (noise[1] - noise[0])"

    @property
    def steps(self) -> int:
        return self.scheduler.steps

    def to_json(self) -> dict:
        return {"scheduler": self.scheduler.to_json(), "steps": self.steps, "strength": self.strength,
                "guidance": self.guidance, "noise_offset": self.noise_offset,
                "time_features": self.time_features.to_json(), "unet_batch": list(self.unet_batch), "cfg": self.cfg}


@dataclass(frozen=True)
class Calibration:
    folder: str
    pairs: list[str]
    held_out: list[str]  # never calibrated on
    sha256: str

    def to_json(self) -> dict:
        return {"folder": self.folder, "pairs": self.pairs, "held_out": self.held_out, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    model: str
    image_size: int
    latent_size: int
    weights: Weights
    target: str
    backend: str
    target_options: dict[str, str]
    quant: str
    tolerance: float | None  # end to end: max abs of the decoded image in [0, 1] against the fp32 torch pipeline
    graphs: dict[str, GraphEntry]
    sampling: Sampling
    conditioning: dict  # how the fixed conditioning is supplied (folded into the unet graph)
    scaling_factor: float  # VAE latent scaling
    preprocess: dict[str, str]
    postprocess: dict[str, str]
    calibration: Calibration
    tools: dict[str, str]
    golden: str = GOLDEN
    npu: dict | None = None  # the NPU the graphs were compiled for ahead of time
    recipe: dict | None = None  # the mixed-precision recipe's file, hash and content
    step_graph: StepGraph | None = None  # the sampling step as a graph, where the backend ships one
    files: dict[str, str] = field(default_factory=dict)  # every file but the manifest -> its sha256

    def to_json(self) -> dict:
        raw = {"schema": SCHEMA, "model": self.model, "image_size": self.image_size, "latent_size": self.latent_size,
               "weights": self.weights.to_json(), "target": self.target, "backend": self.backend,
               "target_options": self.target_options, "quant": self.quant,
               "end_to_end_tolerance": {"max_abs_image01": self.tolerance,
                                        "against": "the fp32 torch pipeline, same inputs and start noise"},
               "graphs": {name: entry.to_json() for name, entry in self.graphs.items()},
               "sampling": self.sampling.to_json(), "conditioning": self.conditioning,
               "vae": {"scaling_factor": self.scaling_factor, "encoder_latent": "distribution mean x scaling_factor",
                       "decoder_output": "image in [0, 1]"},
               "preprocess": self.preprocess, "postprocess": self.postprocess,
               "calibration": self.calibration.to_json(), "tools": self.tools, "golden": self.golden}
        if self.npu is not None:
            raw["npu"] = self.npu
        if self.recipe is not None:
            raw["recipe"] = self.recipe
        if self.step_graph is not None:
            raw["step_graph"] = self.step_graph.to_json()
        raw["files"] = self.files
        return raw

    def referenced_files(self) -> list[str]:
        """Every file (or folder artifact) the loop or a program reads: the graphs' artifacts, the timestep
        features, the golden I/O, the step graph."""
        step = [self.step_graph.file] if self.step_graph is not None else []
        return [*(entry.file for entry in self.graphs.values()), self.sampling.time_features.file, self.golden, *step]

    @staticmethod
    def from_json(raw: object, source: str) -> Manifest:
        top = Fields(raw, "", source)
        schema = top.raw.get("schema")
        if schema != SCHEMA:
            raise EdgeError(f"{source}: schema {schema!r}, this edge reads schema {SCHEMA}")
        weights = top.child("weights")
        graphs = top.child("graphs")
        missing = [name for name in GRAPH_NAMES if name not in graphs.raw]
        if missing or set(graphs.raw) - set(GRAPH_NAMES):
            raise EdgeError(f"{source}: manifest 'graphs' must hold exactly {', '.join(GRAPH_NAMES)}")
        sampling = top.child("sampling")
        features = sampling.child("time_features")
        shape = features.get("shape", list)
        scheduler = _scheduler(sampling.child("scheduler"))
        if len(shape) != 2 or not all(isinstance(n, int) and n > 0 for n in shape) or shape[0] != scheduler.steps:
            raise EdgeError(f"{source}: manifest 'sampling.time_features.shape' must be [steps, F] "
                            f"with steps = {scheduler.steps}")
        calibration = top.child("calibration")
        files = top.child("files")
        for name in files.raw:
            bundle_path(name, f"files.{name}", source)
            files.get(name, str)
        manifest = Manifest(
            model=top.get("model", str), image_size=top.get("image_size", int), latent_size=top.get("latent_size", int),
            weights=Weights(_weights(weights.child("unet")), _weights(weights.child("vae"))),
            target=top.get("target", str), backend=top.get("backend", str),
            target_options=top.get("target_options", dict), quant=top.get("quant", str),
            tolerance=top.child("end_to_end_tolerance").number("max_abs_image01", optional=True),
            graphs={name: _graph(graphs.child(name)) for name in GRAPH_NAMES},
            sampling=Sampling(scheduler, sampling.number("strength"), sampling.number("guidance"),
                              sampling.number("noise_offset"),
                              TimeFeatures(features.path("file"), (shape[0], shape[1]), features.get("dtype", str)),
                              tuple(sampling.strings("unet_batch")), sampling.get("cfg", str)),
            conditioning=top.get("conditioning", dict), scaling_factor=top.child("vae").number("scaling_factor"),
            preprocess=top.get("preprocess", dict), postprocess=top.get("postprocess", dict),
            calibration=Calibration(calibration.get("folder", str), calibration.strings("pairs"),
                                    calibration.strings("held_out"), calibration.get("sha256", str)),
            tools=top.get("tools", dict), golden=top.path("golden"), npu=top.get("npu", dict, optional=True),
            recipe=top.get("recipe", dict, optional=True), files=dict(files.raw),
            step_graph=_step_graph(top.child("step_graph")) if "step_graph" in top.raw else None)
        _check_values(manifest, source)
        unlisted = [name for name in manifest.referenced_files()
                    if name not in manifest.files and not any(f.startswith(f"{name}/") for f in manifest.files)]
        if unlisted:
            raise EdgeError(f"{source}: manifest 'files' does not list {unlisted[0]} (every file read must be hashed)")
        return manifest


def _check_values(manifest: Manifest, source: str) -> None:
    """The values the loop relies on, beyond their types: an app would run a wrong loop on any other."""
    sampling = manifest.sampling
    problems = {
        "image_size": manifest.image_size > 0 and manifest.image_size == 8 * manifest.latent_size
        or "must be 8 x latent_size (f = 8)",
        "sampling.unet_batch": sampling.unet_batch == ("uncond", "cond") or "must be [\"uncond\", \"cond\"]",
        "sampling.strength": 0 < sampling.strength <= 1 or "must be in (0, 1]",
        "sampling.guidance": 0 <= sampling.guidance <= MAX_GUIDANCE or f"must be in 0..{MAX_GUIDANCE}",
        "sampling.noise_offset": 0 <= sampling.noise_offset <= 1 or "must be in 0..1",
        "sampling.scheduler": all(0 < a <= 1 for a in (*sampling.scheduler.alphas, *sampling.scheduler.alphas_next))
        or "alphas must be in (0, 1]",
        "sampling.time_features.dtype": sampling.time_features.dtype == "float32" or "must be float32",
        "vae.scaling_factor": manifest.scaling_factor > 0 or "must be positive",
        "graphs": all(spec.dtype == "float32" for entry in manifest.graphs.values()
                      for spec in (*entry.inputs, *entry.outputs)) or "every input and output must be float32",
        "step_graph": manifest.step_graph is None
        or (manifest.step_graph.inputs, manifest.step_graph.outputs) == step_graph_specs(manifest.latent_size)
        or "must have edge's sampling-step inputs and outputs at latent_size",
    }
    for key, verdict in problems.items():
        if verdict is not True:
            raise EdgeError(f"{source}: manifest '{key}' {verdict}")


def _scheduler(fields: Fields) -> DDIMSchedule:
    timesteps = fields.get("timesteps", list)
    alphas, alphas_next = fields.numbers("alphas_cumprod"), fields.numbers("alphas_cumprod_next")
    if not timesteps or not all(isinstance(t, int) for t in timesteps) or not len(timesteps) == len(alphas) == len(alphas_next):
        raise EdgeError(f"{fields.source}: manifest 'sampling.scheduler' needs as many integer timesteps as alphas")
    return DDIMSchedule(tuple(timesteps), tuple(alphas), tuple(alphas_next))


def _tensor(fields: Fields) -> TensorSpec:
    shape = fields.get("shape", list)
    if not all(isinstance(n, int) and n > 0 for n in shape):
        raise EdgeError(f"{fields.source}: manifest '{fields.where}.shape' must be positive integers")
    return TensorSpec(fields.get("name", str), tuple(shape), fields.get("dtype", str))


def _tensors(fields: Fields, key: str) -> tuple[TensorSpec, ...]:
    return tuple(_tensor(Fields(t, f"{fields.where}.{key}", fields.source)) for t in fields.get(key, list))


def _step_graph(fields: Fields) -> StepGraph:
    return StepGraph(fields.path("file"), _tensors(fields, "inputs"), _tensors(fields, "outputs"),
                     fields.get("computes", str))


def _graph(fields: Fields) -> GraphEntry:
    recipe = fields.child("recipe")
    return GraphEntry(fields.path("file"), _tensors(fields, "inputs"), _tensors(fields, "outputs"),
                      GraphRecipe(recipe.get("quant", str), recipe.strings("float_ops"),
                                  recipe.strings("float_modules"), recipe.strings("rewrites")),
                      fields.get("report", dict), fields.number("golden_sqnr_db", optional=True, infinite=True))
