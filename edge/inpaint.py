"""`edge inpaint`'s sources: the three graphs and the sampling plan of the fp32 torch reference or of a compiled
bundle, each checked before any picture is touched; the loop itself is edge.pipeline.loop.inpaint_image."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edge.bundle.bundle import open_bundle
from edge.bundle.runner import BundleGraphs
from edge.compile.graphs import build_graphs
from edge.errors import EdgeError
from edge.models import default_weights, get_preset, load_unet, load_vae, weights_identity
from edge.pipeline.loop import InpaintGraphs, SamplingPlan, TorchGraphs, sampling_plan
from edge.pipeline.schedule import DEFAULT_GUIDANCE, DEFAULT_STEPS, ddim_schedule
from edge.targets import load_target


@dataclass
class InpaintSource:
    graphs: InpaintGraphs
    plan: SamplingPlan
    image_size: int
    description: dict  # model, runner, and the weights or the bundle, for the result's JSON
    random_weights: list[str] = field(default_factory=list)  # warnings: parts with random weights, and the fix


def torch_source(model: str, weights: Path | None, vae: Path | None, seed: int, steps: int | None,
                 guidance: float | None) -> InpaintSource:
    preset = get_preset(model)
    weights, vae = default_weights(preset, weights, vae)
    unet_id, vae_id = weights_identity(weights, seed), weights_identity(vae, seed)
    random = [f"{part} has RANDOM weights (seed {seed}); the output is noise, not an inpainting. Pass {flag}."
              for part, identity, flag in (("UNet", unet_id, "--weights"), ("VAE", vae_id, "--vae")) if identity.is_random]
    graphs = build_graphs(preset, load_unet(preset, weights, seed), load_vae(preset, vae, seed))
    plan = sampling_plan(preset.unet.time_features, ddim_schedule(steps or DEFAULT_STEPS),
                         DEFAULT_GUIDANCE if guidance is None else guidance)
    description = {"model": preset.name, "runner": "torch fp32", "unet_weights": unet_id.to_json(),
                   "vae_weights": vae_id.to_json()}
    return InpaintSource(TorchGraphs(graphs), plan, preset.image_size, description, random)


def bundle_source(path: Path, steps: int | None, guidance: float | None) -> InpaintSource:
    bundle = open_bundle(path)
    manifest = bundle.manifest
    if steps is not None:
        raise EdgeError(f"{path}: a bundle fixes its schedule ({manifest.sampling.steps} steps); drop --steps")
    target = load_target(manifest.target)
    if not target.runs_here:
        raise EdgeError(f"{path}: {target.name} bundles cannot run on this machine")
    random = [f"this bundle has RANDOM weights (seed {manifest.weights.unet.seed}); the output is noise, not an "
              "inpainting. Pass --weights to edge compile."] if manifest.weights.random else []
    plan = bundle.sampling_plan()
    if guidance is not None:
        plan = replace(plan, guidance=guidance)
    description = {"model": manifest.model, "runner": f"{target.name} {manifest.quant} bundle", "bundle": str(path)}
    return InpaintSource(BundleGraphs(bundle), plan, manifest.image_size, description, random)

