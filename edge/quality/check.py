"""`edge check`: how far a bundle is from the fp32 model, where, and whether that is good enough.

Stages:
  plan_check(request)                           -> CheckPlan: every input validated before any work
    open_bundle                                 (damaged bundles stop here)
    reference weights                           (the checkpoints the bundle was built from, by sha256)
    resolve_gates, load_lpips                   (edge.quality.gates, edge.quality.lpips)
    evaluation_pairs(eval_dir, bundle)          held-out image/mask pairs, never calibrated on
  run_check(plan):
  prepare(models, plan, [], eval pairs)         -> the fp32 pipeline's recordings (edge.compile.prepare)
  compare_graphs(reference, bundle, recordings) -> per graph (and per UNet timestep) SQNR, max abs, CFG ratio
  compare_pipelines(reference, bundle, pairs)   -> per pair: both pipelines' pictures, PSNR / SSIM / LPIPS
  evaluate_gates(gates, metrics)                -> pass / fail per gate (edge.quality.gates)

Graph errors are measured on the fp32 pipeline's recorded inputs (each graph in isolation); the
end-to-end comparison runs both whole pipelines from the same start noise (seed = pair index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edge.backends.contract import HasNumericsProxy, NumericsProxy
from edge.bundle.bundle import Bundle, open_bundle
from edge.bundle.runner import BundleGraphs
from edge.compile.calibration import DEFAULT_CALIB_DIR, ImagePair, find_pairs, split_pairs
from edge.compile.graphs import GRAPH_NAMES, prepare_graph
from edge.compile.prepare import load_models, prepare
from edge.errors import EdgeError
from edge.models import WeightsIdentity, weights_identity
from edge.pipeline.loop import CallableGraphs, SamplingPlan, TorchGraphs, inpaint_image, paste_weight, to_tensor
from edge.quality.gates import GateResult, Threshold, evaluate_gates, resolve_gates
from edge.quality.lpips import LPIPS, crop_around, load_lpips
from edge.quality.metrics import cfg_ratio, max_abs_over, psnr_db, sqnr_db_over, ssim
from edge.targets import load_target


@dataclass(frozen=True)
class CheckRequest:
    bundle: Path
    eval_dir: Path | None = None  # default: the held-out split of calib_data/
    weights: Path | None = None  # the UNet checkpoint the bundle was built from (default: the manifest's path)
    vae: Path | None = None
    gates_file: Path | None = None
    gate_overrides: tuple[str, ...] = ()
    lpips_weights: Path | None = None


@dataclass
class PairOutcome:
    name: str
    picture: Image.Image  # the input
    mask: Image.Image  # binary, white = fill
    reference: Image.Image  # the fp32 torch pipeline's result
    result: Image.Image  # the bundle's result
    metrics: dict[str, float]


@dataclass
class CheckResult:
    bundle: Bundle
    evaluation: dict  # folder and pair names
    graphs: dict[str, dict]  # per graph: sqnr_db, max_abs, samples
    unet_steps: list[dict]  # per sampling step: timestep, sqnr_db, max_abs, cfg_ratio
    pairs: list[PairOutcome]
    metrics: dict[str, float | list[float] | None]  # the gateable numbers (edge.quality.gates.METRICS)
    gates: list[GateResult]
    ground_truth: dict[str, dict[str, float]]  # per metric, fp32 and bundle: mean over pairs against the input
    notices: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(gate.status != "fail" for gate in self.gates)

    def to_json(self) -> dict:
        manifest = self.bundle.manifest
        return json_safe({"bundle": str(self.bundle.path), "target": manifest.target, "quant": manifest.quant,
                          "model": manifest.model, "random_weights": manifest.weights.random,
                          "passed": self.passed, "gates": [g.to_json() for g in self.gates], "metrics": self.metrics,
                          "ground_truth": self.ground_truth, "graphs": self.graphs, "unet_steps": self.unet_steps,
                          "evaluation": self.evaluation,
                          "pairs": [{"name": p.name, **p.metrics} for p in self.pairs], "notices": self.notices})


def json_safe(value):
    """Round floats to 4 significant places; infinities as the string "inf" (JSON has none)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else float(f"{value:.4g}")
    return value


def _reference_weights(identity: WeightsIdentity, given: Path | None, flag: str, bundle: Path) -> Path | None:
    """The checkpoint the bundle was built from, checked by hash; None for random weights."""
    if identity.is_random:
        if given is not None:
            raise EdgeError(f"{bundle}: built from random weights (seed {identity.seed}); drop {flag}")
        return None
    path = Path(given or identity.source)
    if not path.exists():
        raise EdgeError(f"{bundle}: built from {identity.source}, which is not here: pass {flag} with that checkpoint")
    actual = weights_identity(path).sha256
    if actual != identity.sha256:
        raise EdgeError(f"{path}: sha256 {actual[:12]} is not the weights this bundle was built from "
                        f"({identity.sha256[:12]})")
    return path


def evaluation_pairs(eval_dir: Path | None, bundle: Bundle) -> tuple[list[ImagePair], dict, list[str]]:
    """(pairs, description, notices). Pairs the bundle was calibrated on are dropped."""
    if eval_dir is None:
        folder, pairs = DEFAULT_CALIB_DIR, split_pairs(find_pairs(DEFAULT_CALIB_DIR))[1]
    else:
        folder, pairs = Path(eval_dir), find_pairs(eval_dir)
    calibration = bundle.manifest.calibration
    same_folder = Path(calibration.folder).resolve() == folder.resolve()
    calibrated = [p.name for p in pairs if same_folder and p.name in calibration.pairs]
    notices = [f"skipped {', '.join(calibrated)}: the bundle was calibrated on them"] if calibrated else []
    pairs = [p for p in pairs if p.name not in calibrated]
    if not pairs:
        raise EdgeError(f"{folder}: every pair in it was used to calibrate this bundle; pass --eval with held-out pairs")
    return pairs, {"folder": str(folder), "pairs": [p.name for p in pairs]}, notices


def _calls(graphs: CallableGraphs) -> dict[str, Callable]:
    return {"encoder": graphs.encoder, "unet": graphs.unet, "decoder": graphs.decoder}


def compare_graphs(reference: CallableGraphs, candidate: CallableGraphs, recordings: dict, plan: SamplingPlan,
                   on_sample: Callable[[], None]) -> tuple[dict, list[dict]]:
    """Each graph on the fp32 pipeline's recorded inputs: (per graph, per UNet sampling step)."""
    outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    references, candidates = _calls(reference), _calls(candidate)
    for name in GRAPH_NAMES:
        outputs[name] = []
        for sample in recordings[name]:
            with torch.no_grad():
                outputs[name].append((references[name](*sample), candidates[name](*sample)))
            on_sample()
    graphs = {}
    for name, pairs in outputs.items():
        refs, vals = zip(*pairs, strict=True)
        graphs[name] = {"sqnr_db": sqnr_db_over(refs, vals), "max_abs": max_abs_over(refs, vals), "samples": len(pairs)}
    steps = plan.schedule.steps
    unet_steps = []
    for i, timestep in enumerate(plan.schedule.timesteps):
        at_step = outputs["unet"][i::steps]  # recordings are pair-major: pair k's step i is sample k * steps + i
        refs, vals = zip(*at_step, strict=True)
        ratios = [cfg_ratio(r, v) for r, v in at_step]
        unet_steps.append({"step": i, "timestep": timestep, "sqnr_db": sqnr_db_over(refs, vals),
                           "max_abs": max_abs_over(refs, vals), "cfg_ratio": sum(ratios) / len(ratios),
                           "cfg_ratio_min": min(ratios), "cfg_ratio_max": max(ratios)})
    return graphs, unet_steps


def picture_metrics(picture: Image.Image, mask: Image.Image, reference: Image.Image, result: Image.Image,
                    lpips: LPIPS | None) -> dict[str, float]:
    ref, out = to_tensor(reference)[0], to_tensor(result)[0]  # (3, H, W) in [0, 1]
    hole = to_tensor(mask)[0, 0] > 0.5  # (H, W)
    untouched = paste_weight(mask) == 0
    changed = np.abs(np.asarray(result, dtype=np.int16) - np.asarray(picture, dtype=np.int16))  # (H, W, 3) levels
    metrics = {"masked_psnr_db": psnr_db(ref, out, hole), "psnr_db": psnr_db(ref, out),
               "masked_ssim": ssim(ref, out, hole), "ssim": ssim(ref, out),
               "unmasked_max_abs": float(changed[untouched].max()) if untouched.any() else 0.0}
    truth = to_tensor(picture)[0]  # what the hole held before it was masked
    metrics.update({"fp32_truth_masked_psnr_db": psnr_db(truth, ref, hole), "truth_masked_psnr_db": psnr_db(truth, out, hole),
                    "fp32_truth_masked_ssim": ssim(truth, ref, hole), "truth_masked_ssim": ssim(truth, out, hole)})
    if lpips is not None:
        rows, cols = crop_around(hole)
        metrics["lpips"] = float(lpips(ref[None], out[None]))
        metrics["masked_lpips"] = float(lpips(ref[None, :, rows, cols], out[None, :, rows, cols]))
    return metrics


def compare_pipelines(reference: CallableGraphs, candidate: CallableGraphs, plan: SamplingPlan, image_size: int,
                      pairs: list[ImagePair], lpips: LPIPS | None, on_run: Callable[[], None]) -> list[PairOutcome]:
    outcomes = []
    for index, pair in enumerate(pairs):
        picture, mask = pair.pictures()
        results = []
        for graphs in (reference, candidate):
            results.append(inpaint_image(graphs, plan, image_size, picture, mask, seed=index))
            on_run()
        outcomes.append(PairOutcome(pair.name, picture, mask, *results, picture_metrics(picture, mask, *results, lpips)))
    return outcomes


def summary_metrics(graphs: dict, unet_steps: list[dict], pairs: list[PairOutcome]) -> dict:
    """The gateable numbers: each graph's SQNR, the worst step, the CFG ratio range, the worst pair."""
    metrics: dict[str, float | list[float] | None] = {f"{name}_sqnr_db": graphs[name]["sqnr_db"] for name in GRAPH_NAMES}
    metrics["unet_worst_step_sqnr_db"] = min(step["sqnr_db"] for step in unet_steps)
    metrics["cfg_ratio"] = [min(s["cfg_ratio_min"] for s in unet_steps), max(s["cfg_ratio_max"] for s in unet_steps)]
    for name in ("masked_psnr_db", "psnr_db", "masked_ssim", "ssim"):
        metrics[name] = min(p.metrics[name] for p in pairs)
    metrics["unmasked_max_abs"] = max(p.metrics["unmasked_max_abs"] for p in pairs)
    for name in ("lpips", "masked_lpips"):
        metrics[name] = max(p.metrics[name] for p in pairs) if name in pairs[0].metrics else None
    return metrics


def ground_truth_metrics(pairs: list[PairOutcome]) -> dict[str, dict[str, float]]:
    """The model's own error beside the bundle's: both pipelines' holes against the input's pixels, mean over
    pairs. Quantization matters where it moves the bundle's number away from the fp32 one."""
    return {name: {"fp32": float(np.mean([p.metrics[f"fp32_truth_{name}"] for p in pairs])),
                   "bundle": float(np.mean([p.metrics[f"truth_{name}"] for p in pairs]))}
            for name in ("masked_psnr_db", "masked_ssim")}


def resolve_check_gates(request: CheckRequest, bundle: Bundle) -> dict[str, Threshold]:
    profile = load_target(bundle.manifest.target)
    quant = bundle.manifest.quant
    return resolve_gates(profile.gates.get(quant, {}), f"{profile.source} [gates.{quant}]", request.gates_file,
                         request.gate_overrides)


@dataclass
class CheckPlan:
    bundle: Bundle
    unet_weights: Path | None  # None: random weights from `seed`
    vae_weights: Path | None
    seed: int
    gates: dict[str, Threshold]
    lpips: LPIPS | None
    pairs: list[ImagePair]
    evaluation: dict
    notices: list[str]
    proxy: NumericsProxy | None = None  # numerics of the prepared graphs in torch instead (HasNumericsProxy)


def plan_check(request: CheckRequest) -> CheckPlan:
    """Read and validate every input; EdgeError (exit 2) on the first problem."""
    bundle = open_bundle(request.bundle)
    profile = load_target(bundle.manifest.target)
    proxy = None if profile.runs_here else numerics_proxy(bundle)
    gates = resolve_check_gates(request, bundle)
    lpips = load_lpips(request.lpips_weights) if request.lpips_weights else None
    pairs, evaluation, notices = evaluation_pairs(request.eval_dir, bundle)
    if proxy:
        evaluation["numerics_proxy"] = proxy.to_json()
        notices.insert(0, f"NUMERICS PROXY: {profile.name} bundles cannot run here; measured on the same graphs "
                          f"{proxy.measured_as()} ({proxy.why})")
    if lpips is None:
        notices.append("LPIPS skipped: no --lpips-weights given (nothing is downloaded)")
    emulator = bundle.manifest.tools.get("runs_here_with")
    if emulator:
        notices.append(f"{profile.name} runs here in {emulator}: its numerics, emulated; the device's own arithmetic "
                       "can differ (e.g. fp16 accumulation)")
    weights = bundle.manifest.weights
    if weights.random:
        notices.append("the bundle has RANDOM weights: numbers measure the compiler, not image quality")
    unet_path = _reference_weights(weights.unet, request.weights, "--weights", bundle.path)
    vae_path = _reference_weights(weights.vae, request.vae, "--vae", bundle.path)
    seeds = [part.seed for part in (weights.unet, weights.vae) if part.seed is not None]
    return CheckPlan(bundle, unet_path, vae_path, seeds[0] if seeds else 0, gates, lpips, pairs, evaluation, notices,
                     proxy)


def numerics_proxy(bundle: Bundle) -> NumericsProxy:
    """For a target with no runtime here: its backend's numerics proxy (what stands in for running the bundle,
    and why), else EdgeError."""
    backend = bundle.backend()
    if not isinstance(backend, HasNumericsProxy):
        raise EdgeError(f"{bundle.path}: {bundle.manifest.target} bundles cannot run on this machine")
    return backend.numerics_proxy


def proxy_graphs(bundle: Bundle, graphs: dict, recordings: dict) -> CallableGraphs:
    """The bundle's graphs prepared as it records them (same rewrites), to run in torch: its numerics proxy.
    recordings give each graph's example inputs."""
    prepared = {name: prepare_graph(graphs[name], tuple(bundle.manifest.graphs[name].recipe.rewrites),
                                    recordings[name][0]) for name in GRAPH_NAMES}
    return CallableGraphs(*(prepared[name].module for name in GRAPH_NAMES))


def run_check(check: CheckPlan, say: Callable[[str], None] = lambda _: None,
              on_step: Callable[[int, int], None] = lambda done, total: None) -> CheckResult:
    bundle, pairs = check.bundle, check.pairs
    models = load_models(bundle.manifest.model, check.unet_weights, check.vae_weights, check.seed)
    say(f"recording the fp32 pipeline on {len(pairs)} held-out pair(s)")
    prepared = prepare(models, bundle.sampling_plan(), [], pairs)
    graphs, recordings = prepared.graphs, prepared.held_out
    if check.proxy:
        say(f"numerics proxy: the prepared graphs {check.proxy.measured_as()}")
        candidate = proxy_graphs(bundle, graphs, recordings)
    else:
        candidate = BundleGraphs(bundle)
    return _measure(check, prepared.plan, TorchGraphs(graphs), candidate, recordings, say, on_step)


def _measure(check: CheckPlan, plan: SamplingPlan, reference: CallableGraphs, candidate: CallableGraphs,
             recordings: dict, say, on_step) -> CheckResult:
    bundle, pairs = check.bundle, check.pairs
    total = sum(len(recordings[name]) for name in GRAPH_NAMES) + 2 * len(pairs)
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        on_step(done, total)

    say("comparing each graph on recorded inputs")
    graph_metrics, unet_steps = compare_graphs(reference, candidate, recordings, plan, advance)
    say("running both pipelines end to end")
    outcomes = compare_pipelines(reference, candidate, plan, bundle.manifest.image_size, pairs, check.lpips, advance)
    metrics = summary_metrics(graph_metrics, unet_steps, outcomes)
    return CheckResult(bundle, check.evaluation, graph_metrics, unet_steps, outcomes, metrics,
                       evaluate_gates(check.gates, metrics), ground_truth_metrics(outcomes), check.notices)
