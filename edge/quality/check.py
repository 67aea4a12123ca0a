"""`edge check`: how far a bundle is from the fp32 model, where, and whether that is good enough.

Stages:
  plan_check(request)                           -> CheckPlan: every input validated before any work
    open_bundle                                 (damaged bundles stop here)
    reference weights                           (the checkpoints the bundle was built from, by sha256)
    resolve_gates, load_lpips                   (edge.quality.gates, edge.quality.lpips)
    evaluation_pairs(eval_dir, bundle)          held-out image/mask pairs, never calibrated on
  run_check(plan) = merge_measurements(plan, [PairMeter(plan).measure(k) for each pair k])
    PairMeter(plan)                             the fp32 torch model and the bundle's programs, loaded once
    measure(k)                                  -> PairMeasurement: both pipelines on pair k from the same start
                                                   noise (seed = k), the fp32 one recording each graph's inputs and
                                                   outputs; then each of the bundle's graphs alone on those inputs
                                                   (per-sample error sums, CFG ratio per step); the pictures' PSNR /
                                                   SSIM / LPIPS
  merge_measurements(plan, measurements)        -> per graph and per UNet step SQNR, max abs, CFG ratio; gates
    evaluate_gates(gates, metrics)              pass / fail per gate (edge.quality.gates)

Pairs are measured independently and merged in pair order, so edge.cluster.check can measure them on a Ray
cluster and get the serial run's numbers (with the same torch thread count: reductions are summed in an order
that depends on it).
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
from edge.compile.calibration import DEFAULT_CALIB_DIR, ImagePair, RecordingGraphs, find_pairs, split_pairs
from edge.compile.graphs import GRAPH_NAMES, build_graphs, prepare_graph
from edge.compile.prepare import load_models
from edge.errors import EdgeError
from edge.models import WeightsIdentity, weights_identity
from edge.pipeline.loop import CallableGraphs, TorchGraphs, inpaint_image, paste_weight, to_tensor
from edge.quality.gates import GateResult, Threshold, evaluate_gates, resolve_gates
from edge.quality.lpips import LPIPS, crop_around, load_lpips
from edge.quality.metrics import ErrorSums, cfg_ratio, psnr_db, ssim
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


def proxy_graphs(bundle: Bundle, graphs: dict) -> CallableGraphs:
    """The bundle's graphs prepared as it records them (same rewrites), to run in torch: its numerics proxy.
    The bundle's golden inputs give each graph's example inputs."""
    prepared = {name: prepare_graph(graphs[name], tuple(bundle.manifest.graphs[name].recipe.rewrites),
                                    bundle.golden_case(name)[0]) for name in GRAPH_NAMES}
    return CallableGraphs(*(prepared[name].module for name in GRAPH_NAMES))


@dataclass
class PairMeasurement:
    """One evaluation pair's share of a check: what merge_measurements needs (it crosses process boundaries)."""

    index: int  # in CheckPlan.pairs; also the start noise's seed
    outcome: PairOutcome
    graph_errors: dict[str, list[ErrorSums]]  # per graph, one per call of the fp32 pipeline (UNet: per sampling step)
    cfg_ratios: list[float]  # per UNet sampling step


class PairMeter:
    """A check's two pipelines, built once (the fp32 torch model and the bundle's programs, or their numerics
    proxy). measure(index) runs pair `index` through both from the same start noise, recording the fp32
    pipeline's graph inputs and outputs, then runs each of the bundle's graphs alone on those inputs."""

    def __init__(self, check: CheckPlan):
        bundle = check.bundle
        models = load_models(bundle.manifest.model, check.unet_weights, check.vae_weights, check.seed)
        graphs = build_graphs(models.preset, models.unet, models.vae)
        self.check = check
        self.plan = bundle.sampling_plan()
        self.reference = TorchGraphs(graphs)
        self.candidate = proxy_graphs(bundle, graphs) if check.proxy else BundleGraphs(bundle)

    @property
    def calls_per_pair(self) -> int:
        """Progress steps of measure(): two pipelines, then the encoder twice, the UNet per step, the decoder."""
        return 2 + 2 + self.plan.schedule.steps + 1

    def measure(self, index: int, on_call: Callable[[], None] = lambda: None) -> PairMeasurement:
        pair, size = self.check.pairs[index], self.check.bundle.manifest.image_size
        picture, mask = pair.pictures()
        recorder = RecordingGraphs(self.reference, keep_outputs=True)
        results = []
        for graphs in (recorder, self.candidate):
            results.append(inpaint_image(graphs, self.plan, size, picture, mask, seed=index))
            on_call()
        calls = {"encoder": self.candidate.encoder, "unet": self.candidate.unet, "decoder": self.candidate.decoder}
        errors: dict[str, list[ErrorSums]] = {name: [] for name in GRAPH_NAMES}
        cfg = []
        for name in GRAPH_NAMES:
            for sample, expected in zip(recorder.inputs[name], recorder.outputs[name], strict=True):
                with torch.no_grad():
                    value = calls[name](*sample)
                errors[name].append(ErrorSums.of(expected, value))
                if name == "unet":
                    cfg.append(cfg_ratio(expected, value))
                on_call()
        outcome = PairOutcome(pair.name, picture, mask, *results, picture_metrics(picture, mask, *results, self.check.lpips))
        return PairMeasurement(index, outcome, errors, cfg)


def merge_measurements(check: CheckPlan, measurements: list[PairMeasurement]) -> CheckResult:
    """The check's result from every pair's measurement, in pair order: sums added in that order, so the numbers
    do not depend on where (or in how many parts) the pairs were measured."""
    assert [m.index for m in measurements] == list(range(len(check.pairs))), "one measurement per pair, in order"
    graphs = {}
    for name in GRAPH_NAMES:
        total = sum((errors for m in measurements for errors in m.graph_errors[name]), ErrorSums())
        graphs[name] = {"sqnr_db": total.sqnr_db, "max_abs": total.max_abs, "samples": total.samples}
    unet_steps = []
    for i, timestep in enumerate(check.bundle.sampling_plan().schedule.timesteps):
        total = sum((m.graph_errors["unet"][i] for m in measurements), ErrorSums())
        ratios = [m.cfg_ratios[i] for m in measurements]
        unet_steps.append({"step": i, "timestep": timestep, "sqnr_db": total.sqnr_db, "max_abs": total.max_abs,
                           "cfg_ratio": sum(ratios) / len(ratios), "cfg_ratio_min": min(ratios),
                           "cfg_ratio_max": max(ratios)})
    outcomes = [m.outcome for m in measurements]
    metrics = summary_metrics(graphs, unet_steps, outcomes)
    return CheckResult(check.bundle, check.evaluation, graphs, unet_steps, outcomes, metrics,
                       evaluate_gates(check.gates, metrics), ground_truth_metrics(outcomes), check.notices)


def run_check(check: CheckPlan, say: Callable[[str], None] = lambda _: None,
              on_step: Callable[[int, int], None] = lambda done, total: None) -> CheckResult:
    """The check in this process, pair after pair (edge.cluster.check spreads the pairs over a Ray cluster)."""
    say(f"loading the fp32 model and the bundle ({check.proxy.measured_as() if check.proxy else 'its runtime'})")
    meter = PairMeter(check)
    total, done = meter.calls_per_pair * len(check.pairs), 0

    def advance() -> None:
        nonlocal done
        done += 1
        on_step(done, total)

    say(f"measuring {len(check.pairs)} held-out pair(s): both pipelines, then each graph on the fp32 pipeline's inputs")
    return merge_measurements(check, [meter.measure(index, advance) for index in range(len(check.pairs))])
