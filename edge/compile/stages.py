"""`edge compile`: model -> graphs -> calibration -> lowered programs -> bundle, in stages.

Each stage is a short function that takes the previous stage's typed object and returns its own:
  resolve(request)                               -> CompileJob    every input checked before any work
  prepare(models, plan, pairs)                   -> Prepared      (edge.compile.prepare; shared with check
                                                                   and sensitivity)
  lower(job, prepared, staging)                  -> Lowered       each graph through the target's backend,
                                                                   its artifact written into the staging folder
  lower_step(job, prepared, staging)             -> StepGraph     the sampling step as a graph, for backends
                                                                   that ship one (None for the others)
  golden(job, prepared, lowered, staging)        -> Golden        one held-out case per graph: input, the
                                                                   program's output, the fp32 output
  manifest(job, prepared, lowered, golden, step) -> Manifest      (edge.bundle.manifest)
  write(staging, prepared, manifest)             -> Path          timestep features, hashes, atomic rename
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

from edge.backends.contract import CompilesForNpu, LoweredGraph, ShipsStepGraph, check_options
from edge.bundle.bundle import Bundle
from edge.bundle.manifest import (
    GOLDEN,
    TIME_FEATURES,
    Calibration,
    GraphEntry,
    GraphRecipe,
    Manifest,
    Sampling,
    StepGraph,
    TimeFeatures,
    Weights,
)
from edge.bundle.writer import BundleWriter, artifact_bytes
from edge.compile.calibration import DEFAULT_CALIB_DIR, find_pairs, pairs_digest, split_pairs
from edge.compile.graphs import GRAPH_NAMES, PreparedGraph, build_graphs, prepare_graph
from edge.compile.prepare import Prepared, default_sampling_plan, load_models, prepare
from edge.compile.recipe import Recipe, check_modules, check_recipe, read_recipe
from edge.errors import EdgeError
from edge.models.unet import NUM_CONDITIONING_TOKENS
from edge.models.weights import file_sha256
from edge.pipeline.loop import NOISE_OFFSET, PASTE_BLUR_RADIUS
from edge.pipeline.schedule import DEFAULT_STRENGTH
from edge.pipeline.step import step_graph
from edge.quality.metrics import sqnr_db
from edge.targets import TargetProfile, load_target

Say = Callable[[str], None]
OnStep = Callable[[int, int], None]


@dataclass(frozen=True)
class CompileRequest:
    model: str
    target: str
    quant: str | None
    out: Path
    weights: Path | None = None
    vae: Path | None = None
    calib: Path | None = None
    seed: int = 0
    force: bool = False
    recipe: Path | None = None  # mixed-precision recipe (edge.compile.recipe)
    options: tuple[tuple[str, str], ...] = ()  # target options, e.g. (("ios", "18"),) for coreml
    npu: str | None = None  # SoC to compile ahead of time for (backends that are CompilesForNpu)


@dataclass(frozen=True)
class CompileJob:
    """A request with every input resolved and checked."""

    request: CompileRequest
    target: TargetProfile
    quant: str
    recipe: Recipe | None
    options: dict[str, str]
    npu: object | None  # the backend's NPU target, when compiling ahead of time

    @property
    def runs_here(self) -> bool:
        return self.target.runs_here and self.npu is None


def resolve(request: CompileRequest, say: Say = lambda _: None) -> CompileJob:
    target = load_target(request.target)
    recipe = read_recipe(request.recipe) if request.recipe else None
    quant = target.check_quant(request.quant or (recipe.quant if recipe else None))
    if recipe:
        check_recipe(recipe, request.recipe, request.model, target.name, quant)
    options = check_options(target.backend, dict(request.options))
    npu = None
    if request.npu:
        if not isinstance(target.backend, CompilesForNpu):
            raise EdgeError(f"target {target.name} has no NPU compilation (--npu); tflite has")
        say(f"checking the NPU compiler for {request.npu}")
        npu = target.backend.npu_target(request.npu)
    return CompileJob(request, target, quant, recipe, options, npu)


@dataclass(frozen=True)
class LoweredArtifact:
    prepared: PreparedGraph
    lowered: LoweredGraph
    path: Path  # the artifact in the staging folder
    float_modules: tuple[str, ...]


Lowered = dict[str, LoweredArtifact]
Golden = dict[str, float | None]  # golden SQNR of each program against fp32; None where it cannot run here


def lower(job: CompileJob, prepared: Prepared, staging: BundleWriter, say: Say, on_graph: OnStep) -> Lowered:
    backend, golden_inputs = job.target.backend, prepared.golden_inputs()
    lowered: Lowered = {}
    for index, name in enumerate(GRAPH_NAMES):
        graph = prepare_graph(prepared.graphs[name], job.target.rewrites, golden_inputs[name])
        float_modules = job.recipe.modules_for(name) if job.recipe else ()
        say(f"lowering {name} ({job.quant}{', recipe' if float_modules else ''}) for {job.target.name}")
        started = time.perf_counter()
        result = backend.lower(graph, job.quant, prepared.calibration[name], float_modules, job.options)
        result.report["seconds"] = round(time.perf_counter() - started, 1)
        if job.npu is not None:
            result = backend.for_npu(result, job.npu)
        path = staging.write(f"{name}{job.target.artifact}", result.payload)
        result.report["bytes"] = artifact_bytes(path)
        partitions = f", {result.report['partitions']} partition(s)" if "partitions" in result.report else ""
        reused = " (a lowering done before, from the cache)" if result.report.get("from_cache") else ""
        say(f"  {name}: {result.report['bytes'] / 1e6:.1f} MB{partitions}, {result.report['seconds']} s{reused}")
        lowered[name] = LoweredArtifact(graph, result, path, float_modules)
        on_graph(index + 1, len(GRAPH_NAMES))
    return lowered


def lower_step(job: CompileJob, prepared: Prepared, staging: BundleWriter) -> StepGraph | None:
    backend = job.target.backend
    if not isinstance(backend, ShipsStepGraph):
        return None
    graph = step_graph(prepared.models.preset.latent_size)
    path = staging.write(f"step{job.target.artifact}", backend.lower_step(graph))
    return StepGraph(path.name, graph.inputs, graph.outputs)


def golden(job: CompileJob, prepared: Prepared, lowered: Lowered, staging: BundleWriter) -> Golden:
    """golden.safetensors: per graph its held-out input, the program's output (the fp32 output where the program
    cannot run here) and the fp32 torch output."""
    tensors, sqnr = {}, {}
    for name, inputs in prepared.golden_inputs().items():
        with torch.no_grad():
            reference = prepared.graphs[name].module(*inputs)
        output = job.target.backend.load(lowered[name].path)(*inputs) if job.runs_here else reference.clone()
        tensors.update({f"{name}.input.{j}": t.contiguous() for j, t in enumerate(inputs)})
        tensors[f"{name}.reference"], tensors[f"{name}.output"] = reference.contiguous(), output.contiguous()
        sqnr[name] = round(sqnr_db(reference, output), 2) if job.runs_here else None
    save_file(tensors, staging.path(GOLDEN))
    return sqnr


def manifest(job: CompileJob, prepared: Prepared, lowered: Lowered, golden_sqnr: Golden,
             step: StepGraph | None) -> Manifest:
    request, target, preset, plan = job.request, job.target, prepared.models.preset, prepared.plan
    graphs = {name: GraphEntry(artifact.path.name, prepared.graphs[name].inputs, prepared.graphs[name].outputs,
                               GraphRecipe(job.quant, artifact.lowered.float_ops, list(artifact.float_modules),
                                           list(target.rewrites)),
                               artifact.lowered.report, golden_sqnr[name])
              for name, artifact in lowered.items()}
    calib_dir = request.calib or DEFAULT_CALIB_DIR
    tokens = NUM_CONDITIONING_TOKENS
    return Manifest(
        model=preset.name, image_size=preset.image_size, latent_size=preset.latent_size,
        weights=Weights(prepared.models.unet_weights, prepared.models.vae_weights),
        target=target.name, backend=target.backend.name, target_options=job.options, quant=job.quant,
        tolerance=target.tolerance.get(job.quant), graphs=graphs,
        sampling=Sampling(plan.schedule, DEFAULT_STRENGTH, plan.guidance, NOISE_OFFSET,
                          TimeFeatures(TIME_FEATURES, tuple(plan.time_features.shape))),
        conditioning={"kind": "folded into the unet graph", "uncond_ids": list(range(tokens, 2 * tokens)),
                      "cond_ids": list(range(tokens))},
        scaling_factor=float(prepared.models.vae.config.scaling_factor),
        preprocess={"image": "RGB resized to image_size x image_size (Lanczos), x / 127.5 - 1",
                    "mask": "binarised at 0.5 (white = fill), latent mask = nearest resize to latent_size",
                    "masked_image": "image * (1 - mask)",
                    "unet_latent": "concat(noisy latent 4, latent mask 1, masked-image latent 4) on channels"},
        postprocess={"paste_back": f"out * blur(mask) + input * (1 - blur(mask)), Gaussian radius {PASTE_BLUR_RADIUS}"},
        calibration=Calibration(str(calib_dir), [p.name for p in prepared.calib_pairs],
                                [p.name for p in prepared.eval_pairs], pairs_digest(prepared.calib_pairs)),
        tools={"edge": version("edge"), "python": platform.python_version(), **target.backend.versions()},
        npu=job.npu.to_json() if job.npu is not None else None,
        recipe={"file": str(request.recipe), "sha256": file_sha256(request.recipe), **job.recipe.to_json()}
        if job.recipe else None, step_graph=step)


def write(staging: BundleWriter, prepared: Prepared, bundle_manifest: Manifest) -> Path:
    prepared.plan.time_features.numpy().astype("<f4").tofile(staging.path(TIME_FEATURES))
    return staging.commit(bundle_manifest)


def compile_bundle(request: CompileRequest, say: Say = lambda _: None, on_step: OnStep = lambda done, total: None) -> Path:
    """Compile one bundle. say(line) reports stages; on_step(done, total) counts recorded pairs and lowered graphs."""
    job = resolve(request, say)
    staging = BundleWriter(request.out, request.force)
    try:
        models = load_models(request.model, request.weights, request.vae, request.seed)
        for part, identity in (("UNet", models.unet_weights), ("VAE", models.vae_weights)):
            if identity.is_random:
                say(f"WARNING: {part} has RANDOM weights (seed {identity.seed}); the bundle is for testing only")
        if job.recipe:  # before any recording: a recipe naming a module the graphs lack is a user mistake
            for name, spec in build_graphs(models.preset, models.unet, models.vae).items():
                check_modules(job.recipe, request.recipe, name, {n for n, _ in spec.module.named_modules()})
        calib_pairs, eval_pairs = split_pairs(find_pairs(request.calib or DEFAULT_CALIB_DIR))
        pairs, total = len(calib_pairs) + len(eval_pairs), len(calib_pairs) + len(eval_pairs) + len(GRAPH_NAMES)
        prepared = prepare(models, default_sampling_plan(models.preset), calib_pairs, eval_pairs,
                           lambda done, _: on_step(done, total))
        on_step(pairs, total)
        say(f"calibration inputs: {len(calib_pairs)} pairs x {prepared.plan.schedule.steps} steps, "
            f"{len(eval_pairs)} held out ({'from cache' if prepared.from_cache else 'recorded'})")
        lowered = lower(job, prepared, staging, say, lambda done, _: on_step(pairs + done, total))
        step = lower_step(job, prepared, staging)
        golden_sqnr = golden(job, prepared, lowered, staging)
        return write(staging, prepared, manifest(job, prepared, lowered, golden_sqnr, step))
    except BaseException:
        staging.abort()
        raise


def compile_summary(bundle: Bundle, path: Path, seconds: float) -> dict:
    """What `edge compile --json` (and each `edge matrix` entry) reports of a bundle: `path` is where it is, or will
    be once moved; its size on disk."""
    manifest = bundle.manifest
    size = sum(file.stat().st_size for file in bundle.path.rglob("*") if file.is_file())
    return {"bundle": str(path), "target": manifest.target, "quant": manifest.quant, "model": manifest.model,
            "target_options": manifest.target_options, "random_weights": manifest.weights.random, "seconds": seconds,
            "bundle_bytes": size, "graphs": {n: {"file": g.file, "golden_sqnr_db": g.golden_sqnr_db, **g.report}
                                             for n, g in manifest.graphs.items()}}
