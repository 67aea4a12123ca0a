"""`edge compile`: model -> graphs -> calibration -> lowered programs -> bundle.

Stages, each a function of the previous stage's object:
  load_models(model, weights, vae, seed)      -> Models (modules + weight identities)
  build_graphs(preset, unet, vae)             -> {name: GraphSpec}           (edge.graphs)
  prepare_graph(spec, rewrites)               -> PreparedGraph               (BN folded, target rewrites)
  calibration_recordings(models, plan, pairs) -> {graph: [inputs, ...]}      (timestep-aware, cached)
  backend.lower(prepared, quant, samples)     -> LoweredGraph                (edge.backends.<target>)
  write_bundle(...)                           -> Bundle folder               (edge.bundle)
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from edge.backends import check_options, get_backend
from edge.bundle import GOLDEN, GRAPH_NAMES, TIME_FEATURES, BundleWriter, artifact_bytes
from edge.calibration import DEFAULT_CALIB_DIR, cached_recordings, find_pairs, pairs_digest, record, split_pairs
from edge.errors import EdgeError
from edge.graphs import GraphSpec, TensorSpec, build_graphs, fold_batch_norms
from edge.metrics import sqnr_db
from edge.models import Preset, WeightsIdentity, get_preset, load_unet, load_vae, weights_identity
from edge.models.unet import NUM_CONDITIONING_TOKENS
from edge.models.weights import file_sha256
from edge.pipeline import NOISE_OFFSET, PASTE_BLUR_RADIUS, SamplingPlan, TorchGraphs, sampling_plan
from edge.recipe import Recipe, check_modules, check_recipe, read_recipe
from edge.rewrites import REWRITES
from edge.schedule import DEFAULT_GUIDANCE, DEFAULT_STEPS, DEFAULT_STRENGTH, ddim_schedule
from edge.targets import TargetProfile, load_target

GOLDEN_UNET_STEP = 9  # the golden UNet input is the middle sampling step of the first held-out pair


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
    recipe: Path | None = None  # mixed-precision recipe (edge.recipe)
    options: tuple[tuple[str, str], ...] = ()  # target options, e.g. (("ios", "18"),) for coreml
    npu: str | None = None  # SoC to compile ahead of time for (backends with npu_target / for_npu)


@dataclass
class Models:
    preset: Preset
    unet: nn.Module
    vae: nn.Module
    unet_weights: WeightsIdentity
    vae_weights: WeightsIdentity


@dataclass
class PreparedGraph:
    name: str
    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def load_models(model: str, weights: Path | None, vae: Path | None, seed: int) -> Models:
    preset = get_preset(model)
    unet_id, vae_id = weights_identity(weights, seed), weights_identity(vae, seed)
    return Models(preset, load_unet(preset, weights, seed), load_vae(preset, vae, seed), unet_id, vae_id)


def default_sampling_plan(preset: Preset) -> SamplingPlan:
    """The published sampling: DDIM 20 steps at strength 0.99 (19 run), guidance 2.0."""
    return sampling_plan(preset.unet.time_features, ddim_schedule(DEFAULT_STEPS, DEFAULT_STRENGTH), DEFAULT_GUIDANCE)


def prepare_graph(spec: GraphSpec, rewrites: tuple[str, ...], example_inputs: tuple[torch.Tensor, ...]) -> PreparedGraph:
    unknown = [r for r in rewrites if r not in REWRITES]
    if unknown:
        raise EdgeError(f"unknown rewrite {', '.join(unknown)}: known are {', '.join(REWRITES)}")
    module = fold_batch_norms(spec.module)
    for rewrite in rewrites:
        module = REWRITES[rewrite](module)
    return PreparedGraph(spec.name, module.eval(), example_inputs, spec.inputs, spec.outputs)


def calibration_recordings(models: Models, graphs: dict[str, GraphSpec], plan: SamplingPlan, pairs, role: str,
                           on_pair: Callable[[int, int], None] | None = None):
    key = {"role": role, "model": models.preset.name, "unet": models.unet_weights.to_json(),
           "vae": models.vae_weights.to_json(), "pairs": pairs_digest(pairs), "size": models.preset.image_size,
           "timesteps": list(plan.schedule.timesteps), "guidance": plan.guidance}
    return cached_recordings(key, lambda: record(TorchGraphs(graphs), plan, pairs, models.preset.image_size, on_pair))


def compile_bundle(request: CompileRequest, say: Callable[[str], None] = lambda _: None,
                   on_step: Callable[[int, int], None] = lambda done, total: None) -> Path:
    """Compile one bundle. say(line) reports stages; on_step(done, total) counts recorded pairs and lowered graphs."""
    profile = load_target(request.target)
    recipe = read_recipe(request.recipe) if request.recipe else None
    quant = profile.check_quant(request.quant or (recipe.quant if recipe else None))
    if recipe:
        check_recipe(recipe, request.recipe, request.model, profile.name, quant)
    backend = get_backend(profile.backend)
    options = check_options(backend, profile.name, dict(request.options))
    npu = _npu_target(backend, profile, request.npu, say) if request.npu else None
    writer = BundleWriter(request.out, request.force)
    try:
        return _compile(request, profile, quant, recipe, backend, options, writer, say, on_step, npu)
    except BaseException:
        writer.abort()
        raise


def _npu_target(backend, profile: TargetProfile, soc: str, say):
    """The backend's NPU target for SOC, checked (vendor plugin and SDK) before any work."""
    if not hasattr(backend, "npu_target"):
        raise EdgeError(f"target {profile.name} has no NPU compilation (--npu); tflite has")
    say(f"checking the NPU compiler for {soc}")
    return backend.npu_target(soc)


def _compile(request, profile: TargetProfile, quant, recipe: Recipe | None, backend, options: dict[str, str],
             writer: BundleWriter, say, on_step, npu=None) -> Path:
    calib_dir = request.calib or DEFAULT_CALIB_DIR
    calib_pairs, eval_pairs = split_pairs(find_pairs(calib_dir))
    recorded, total = len(calib_pairs) + len(eval_pairs), len(calib_pairs) + len(eval_pairs) + len(GRAPH_NAMES)
    models = load_models(request.model, request.weights, request.vae, request.seed)
    for part, identity in (("UNet", models.unet_weights), ("VAE", models.vae_weights)):
        if identity.is_random:
            say(f"WARNING: {part} has RANDOM weights (seed {identity.seed}); the bundle is for testing only")
    preset = models.preset
    graphs = build_graphs(preset, models.unet, models.vae)
    for name in GRAPH_NAMES if recipe else ():
        check_modules(recipe, request.recipe, name, {n for n, _ in graphs[name].module.named_modules()})
    plan = default_sampling_plan(preset)

    calibration, cached = calibration_recordings(models, graphs, plan, calib_pairs, "calibration",
                                                 lambda done, _: on_step(done, total))
    held_out, _ = calibration_recordings(models, graphs, plan, eval_pairs, "held-out",
                                         lambda done, _: on_step(len(calib_pairs) + done, total))
    on_step(recorded, total)
    say(f"calibration inputs: {len(calib_pairs)} pairs x {plan.schedule.steps} steps, "
        f"{len(eval_pairs)} held out ({'from cache' if cached else 'recorded'})")

    golden_inputs = {name: held_out[name][GOLDEN_UNET_STEP if name == "unet" else 0] for name in GRAPH_NAMES}
    graph_entries, lowered_files = {}, {}
    for name in GRAPH_NAMES:
        spec = graphs[name]
        prepared = prepare_graph(spec, profile.rewrites, golden_inputs[name])
        float_modules = recipe.modules_for(name) if recipe else ()
        say(f"lowering {name} ({quant}{', recipe' if float_modules else ''}) for {profile.name}")
        lowered = backend.lower(prepared, quant, calibration[name], float_modules, options)
        if npu:
            lowered = backend.for_npu(lowered, npu)
        file_name = f"{name}{profile.artifact}"
        lowered_files[name] = writer.write(file_name, lowered.payload)
        lowered.report["bytes"] = artifact_bytes(lowered_files[name])
        graph_entries[name] = {"file": file_name, "inputs": [s.to_json() for s in spec.inputs],
                               "outputs": [s.to_json() for s in spec.outputs],
                               "recipe": {"quant": quant, "float_ops": lowered.float_ops, "float_modules": list(float_modules),
                                          "rewrites": list(profile.rewrites)},
                               "report": lowered.report}
        partitions = f", {lowered.report['partitions']} partition(s)" if "partitions" in lowered.report else ""
        say(f"  {name}: {lowered.report['bytes'] / 1e6:.1f} MB{partitions}, {lowered.report['seconds']} s")
        on_step(recorded + GRAPH_NAMES.index(name) + 1, total)

    golden = {}
    for name in GRAPH_NAMES:
        inputs = golden_inputs[name]
        with torch.no_grad():
            reference = graphs[name].module(*inputs)
        runs = profile.runs_here and not npu
        output = backend.load(lowered_files[name])(*inputs) if runs else reference.clone()
        golden.update({f"{name}.input.{j}": t.contiguous() for j, t in enumerate(inputs)})
        golden[f"{name}.reference"], golden[f"{name}.output"] = reference.contiguous(), output.contiguous()
        graph_entries[name]["golden_sqnr_db"] = round(sqnr_db(reference, output), 2) if runs else None  # None: not run here
    save_file(golden, writer.path(GOLDEN))
    plan.time_features.numpy().astype("<f4").tofile(writer.path(TIME_FEATURES))

    manifest = _manifest(request, profile, quant, backend, options, models, plan, graph_entries, calib_dir, calib_pairs,
                         eval_pairs)
    if npu:
        manifest["npu"] = npu.to_json()
    if recipe:
        manifest["recipe"] = {"file": str(request.recipe), "sha256": file_sha256(request.recipe), **recipe.to_json()}
    return writer.commit(manifest)


def _manifest(request, profile, quant, backend, options: dict[str, str], models: Models, plan: SamplingPlan, graphs: dict, calib_dir,
              calib_pairs, eval_pairs) -> dict:
    preset = models.preset
    return {
        "schema": 1,
        "model": preset.name,
        "image_size": preset.image_size,
        "latent_size": preset.latent_size,
        "weights": {"unet": models.unet_weights.to_json(), "vae": models.vae_weights.to_json(),
                    "random": models.unet_weights.is_random or models.vae_weights.is_random},
        "target": profile.name,
        "backend": profile.backend,
        "target_options": options,
        "quant": quant,
        "end_to_end_tolerance": {"max_abs_image01": profile.tolerance.get(quant),
                                 "against": "the fp32 torch pipeline, same inputs and start noise"},
        "graphs": graphs,
        "sampling": {
            "scheduler": plan.schedule.to_json(),
            "steps": plan.schedule.steps,
            "strength": DEFAULT_STRENGTH,
            "guidance": plan.guidance,
            "noise_offset": NOISE_OFFSET,
            "time_features": {"file": TIME_FEATURES, "dtype": "float32", "shape": list(plan.time_features.shape),
                              "note": "row i is the unet's time_features input at sampling step i"},
            "unet_batch": ["uncond", "cond"],
            "cfg": "noise = noise[0] + guidance * (noise[1] - noise[0])",
        },
        "conditioning": {"kind": "folded into the unet graph", "uncond_ids": list(range(NUM_CONDITIONING_TOKENS, 2 * NUM_CONDITIONING_TOKENS)),
                         "cond_ids": list(range(NUM_CONDITIONING_TOKENS))},
        "vae": {"scaling_factor": preset.scaling_factor, "encoder_latent": "distribution mean x scaling_factor",
                "decoder_output": "image in [0, 1]"},
        "preprocess": {"image": "RGB resized to image_size x image_size (Lanczos), x / 127.5 - 1",
                       "mask": "binarised at 0.5 (white = fill), latent mask = nearest resize to latent_size",
                       "masked_image": "image * (1 - mask)",
                       "unet_latent": "concat(noisy latent 4, latent mask 1, masked-image latent 4) on channels"},
        "postprocess": {"paste_back": f"out * blur(mask) + input * (1 - blur(mask)), Gaussian radius {PASTE_BLUR_RADIUS}"},
        "calibration": {"folder": str(calib_dir), "pairs": [p.name for p in calib_pairs],
                        "held_out": [p.name for p in eval_pairs], "sha256": pairs_digest(calib_pairs)},
        "tools": {"edge": version("edge"), "python": platform.python_version(), **backend.versions()},
        "golden": GOLDEN,
    }
