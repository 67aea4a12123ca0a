"""Per-layer sensitivity of the UNet to quantization, and the mixed-precision recipe it suggests.

The UNet graph is cut into layer groups (`layer_groups`): conv_in, conv_out and, at granularity
"layer", every ResNet, transformer and resampling block of the down and up paths (at "block", each
of those lists as one group). With the target's own quantizer run in torch (a backend that
`Simulates`), for each group:

  only     quantize this group alone, everything else float: the SQNR it costs by itself;
  without  quantize everything but this group: the SQNR gained by keeping it float (gain_db, against
           the all-quantized graph).

SQNR is the UNet output's against fp32 over held-out recorded inputs (signal and noise summed over
the samples: high, middle and low timesteps of each held-out pair). The recipe keeps float the
groups with the best gain per extra megabyte until `float_fraction` of the quantizable weights
are float, then measures that mix once more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edge.backends.contract import Simulates
from edge.compile.calibration import DEFAULT_CALIB_DIR, find_pairs, split_pairs
from edge.compile.graphs import prepare_graph
from edge.compile.prepare import default_sampling_plan, load_models, prepare
from edge.compile.recipe import Recipe
from edge.errors import EdgeError
from edge.quality.metrics import sqnr_db_over
from edge.targets import load_target

GRANULARITIES = ("layer", "block")
FLOAT_BYTES_PER_WEIGHT = 3  # an fp32 weight costs 4 bytes where an int8 one costs 1
EVAL_STEPS_PER_PAIR = 3  # first, middle and last sampling step of each held-out pair


@dataclass(frozen=True)
class LayerGroup:
    name: str  # module path in the UNet graph module, e.g. "denoiser.up_blocks.0.attentions.2"
    weights: int  # conv and linear weight values in the group (what quantization shrinks)

    @property
    def float_cost_mb(self) -> float:
        return self.weights * FLOAT_BYTES_PER_WEIGHT / 1e6


@dataclass(frozen=True)
class GroupSensitivity:
    group: LayerGroup
    only_db: float  # SQNR with only this group quantized
    without_db: float  # SQNR with everything but this group quantized
    gain_db: float  # without_db - SQNR of the all-quantized graph

    def to_json(self) -> dict:
        return {"group": self.group.name, "weights": self.group.weights,
                "float_cost_mb": round(self.group.float_cost_mb, 3), "only_db": round(self.only_db, 2),
                "without_db": round(self.without_db, 2), "gain_db": round(self.gain_db, 2)}


@dataclass(frozen=True)
class SensitivityResult:
    quantized_db: float  # SQNR of the all-quantized UNet
    groups: tuple[GroupSensitivity, ...]  # ranked, highest gain first
    eval_samples: int
    calibration_samples: int
    seconds: float

    def to_json(self) -> dict:
        return {"all_quantized_sqnr_db": round(self.quantized_db, 2), "eval_samples": self.eval_samples,
                "calibration_samples": self.calibration_samples, "seconds": round(self.seconds, 1),
                "ranking": [g.to_json() for g in self.groups]}


def _weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)))


def check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise EdgeError(f"granularity {granularity!r}: choose one of {', '.join(GRANULARITIES)}")


def layer_groups(unet_graph: nn.Module, granularity: str = "layer") -> list[LayerGroup]:
    """The UNet graph's quantizable units, in graph order (time_embedding is never quantized)."""
    check_granularity(granularity)
    denoiser = unet_graph.denoiser
    groups = [LayerGroup("denoiser.conv_in", _weights(denoiser.conv_in))]
    for path in ("down_blocks", "up_blocks"):
        for index, block in enumerate(getattr(denoiser, path)):
            for part, modules in block.named_children():  # resnets, attentions, downsamplers / upsamplers
                prefix = f"denoiser.{path}.{index}.{part}"
                if granularity == "block":
                    groups.append(LayerGroup(prefix, _weights(modules)))
                else:
                    groups += [LayerGroup(f"{prefix}.{j}", _weights(m)) for j, m in enumerate(modules)]
    groups.append(LayerGroup("denoiser.conv_out", _weights(denoiser.conv_out)))
    return [g for g in groups if g.weights]


def evaluation_samples(held_out_unet: Sequence[tuple[torch.Tensor, ...]], steps: int) -> list[tuple[torch.Tensor, ...]]:
    """First, middle and last step of each held-out pair's recorded UNet inputs."""
    picks = sorted({0, steps // 2, steps - 1})[:EVAL_STEPS_PER_PAIR]
    return [held_out_unet[start + i] for start in range(0, len(held_out_unet), steps) for i in picks]


@dataclass(frozen=True)
class QuantizedSqnr:
    """SQNR against fp32, on fixed held-out samples, of the graph quantized with some modules kept float."""

    simulate: Callable[[tuple[str, ...]], Callable]  # float_modules -> the quantized graph, runnable in torch
    samples: Sequence[tuple[torch.Tensor, ...]]
    references: Sequence[torch.Tensor]  # the fp32 graph's output for each sample

    def __call__(self, float_modules: tuple[str, ...]) -> float:
        program = self.simulate(float_modules)
        with torch.no_grad():
            return sqnr_db_over(self.references, [program(*sample) for sample in self.samples])


def variants(groups: Sequence[LayerGroup]) -> list[tuple[str, ...]]:
    """The float-module sets measured, in rank()'s order: none (all quantized), then per group everything but it
    float ("only") and it float ("without")."""
    names = tuple(g.name for g in groups)
    return [()] + [variant for group in groups
                   for variant in (tuple(n for n in names if n != group.name), (group.name,))]


def rank(groups: Sequence[LayerGroup], values: Sequence[float], calibration_samples: int, eval_samples: int,
         seconds: float) -> SensitivityResult:
    """The ranking from each variant's SQNR (values in variants(groups)' order)."""
    quantized_db = values[0]
    rows = [GroupSensitivity(group, values[1 + 2 * k], values[2 + 2 * k], values[2 + 2 * k] - quantized_db)
            for k, group in enumerate(groups)]
    rows.sort(key=lambda row: row.gain_db, reverse=True)
    return SensitivityResult(quantized_db, tuple(rows), eval_samples, calibration_samples, seconds)


def choose_float_groups(result: SensitivityResult, float_fraction: float) -> list[LayerGroup]:
    """Groups with a positive gain, best gain per extra megabyte first, while the float weights stay
    within float_fraction of all quantizable weights."""
    budget = float_fraction * sum(row.group.weights for row in result.groups)
    chosen, used = [], 0
    for row in sorted(result.groups, key=lambda r: r.gain_db / max(r.group.float_cost_mb, 1e-6), reverse=True):
        if row.gain_db > 0 and used + row.group.weights <= budget:
            chosen.append(row.group)
            used += row.group.weights
    return chosen


def suggest_recipe(result: SensitivityResult, chosen: Sequence[LayerGroup], sqnr_with_float: QuantizedSqnr, *,
                   model: str, target: str, quant: str, float_fraction: float) -> Recipe:
    """The recipe keeping `chosen` float, with its SQNR measured the same way as the ranking's."""
    float_modules = tuple(g.name for g in chosen)
    predicted = sqnr_with_float(float_modules)
    return Recipe(model=model, target=target, quant=quant, float_modules={"unet": float_modules},
                  expected={"unet_sqnr_db": round(predicted, 2), "all_quantized_unet_sqnr_db": round(result.quantized_db, 2),
                            "float_fraction": float_fraction,
                            "extra_mb": round(sum(g.float_cost_mb for g in chosen), 2)})


@dataclass(frozen=True)
class SensitivityRequest:
    model: str
    target: str
    quant: str | None
    weights: Path | None = None
    vae: Path | None = None
    calib: Path | None = None
    seed: int = 0
    granularity: str = "layer"
    float_fraction: float = 0.1
    calibration_samples: int = 6


@dataclass(frozen=True)
class SensitivitySetup:
    """What every variant is measured with, built once: the quantized graph's SQNR function and the groups."""

    model: str  # the preset's name
    target: str
    quant: str
    sqnr_with_float: QuantizedSqnr
    groups: list[LayerGroup]
    calibration_samples: int


def set_up_sensitivity(request: SensitivityRequest, say: Callable[[str], None] = lambda _: None) -> SensitivitySetup:
    """Validate the request, record the fp32 pipeline, build the target's quantizer and the layer groups."""
    profile = load_target(request.target)
    quant = profile.check_quant(request.quant)
    if quant == "fp32":
        raise EdgeError("sensitivity needs a quantized mode: fp32 has nothing to rank")
    if not 0 <= request.float_fraction <= 1:
        raise EdgeError(f"--float-fraction {request.float_fraction} must be within 0..1")
    check_granularity(request.granularity)  # before the minutes of recording that precede layer_groups
    backend = profile.backend
    if not isinstance(backend, Simulates):
        raise EdgeError(f"target {profile.name}: its backend cannot run its quantizer here, so no sensitivity")
    calib_pairs, eval_pairs = split_pairs(find_pairs(request.calib or DEFAULT_CALIB_DIR))
    models = load_models(request.model, request.weights, request.vae, request.seed)
    prepared = prepare(models, default_sampling_plan(models.preset), calib_pairs, eval_pairs)
    samples = evaluation_samples(prepared.held_out["unet"], prepared.plan.schedule.steps)
    unet = prepare_graph(prepared.graphs["unet"], profile.rewrites, samples[0])
    stride = max(1, len(prepared.calibration["unet"]) // request.calibration_samples)
    calibration_set = prepared.calibration["unet"][::stride][: request.calibration_samples]
    with torch.no_grad():
        references = [unet.module(*sample) for sample in samples]
    sqnr_with_float = QuantizedSqnr(backend.simulator(unet, quant, calibration_set), samples, references)
    groups = layer_groups(unet.module, request.granularity)
    say(f"{len(groups)} layer groups x 2 variants, {len(calibration_set)} calibration and {len(samples)} "
        f"held-out samples")
    return SensitivitySetup(models.preset.name, profile.name, quant, sqnr_with_float, groups, len(calibration_set))


MeasureVariants = Callable[[list[tuple[str, ...]], Callable[[int, int], None]], list[float]]


def run_sensitivity(request: SensitivityRequest, say: Callable[[str], None] = lambda _: None,
                    on_variant: Callable[[int, int], None] = lambda done, total: None,
                    measure: MeasureVariants | None = None) -> tuple[SensitivityResult, Recipe]:
    """Rank the UNet's layer groups for request.target / quant and suggest a recipe. measure(variants, on_variant)
    gives each variant's SQNR (default: here, one after the other; edge.cluster.sensitivity: on a Ray cluster)."""
    setup = set_up_sensitivity(request, say)
    started = time.perf_counter()
    measured = variants(setup.groups)
    if measure is None:
        values = []
        for variant in measured:
            values.append(setup.sqnr_with_float(variant))
            on_variant(len(values), len(measured))
    else:
        values = measure(measured, on_variant)
    result = rank(setup.groups, values, setup.calibration_samples, len(setup.sqnr_with_float.samples),
                  time.perf_counter() - started)
    chosen = choose_float_groups(result, request.float_fraction)
    recipe = suggest_recipe(result, chosen, setup.sqnr_with_float, model=setup.model, target=setup.target,
                            quant=setup.quant, float_fraction=request.float_fraction)
    return result, recipe
