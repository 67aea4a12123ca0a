"""The first stage of compile, check and sensitivity: models, their three graphs, the sampling plan, and the
fp32 pipeline's timestep-aware recordings of every graph's inputs on the calibration and held-out pairs.

  load_models(model, weights, vae, seed)                -> Models
  prepare(models, plan, calib_pairs, eval_pairs)        -> Prepared
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edge.backends.contract import Sample
from edge.compile.calibration import ImagePair, cached_recordings, pairs_digest, record
from edge.compile.graphs import GRAPH_NAMES, GraphSpec, build_graphs
from edge.models import Preset, WeightsIdentity, default_weights, get_preset, load_unet, load_vae, weights_identity
from edge.pipeline.loop import SamplingPlan, TorchGraphs, sampling_plan
from edge.pipeline.schedule import DEFAULT_GUIDANCE, DEFAULT_STEPS, DEFAULT_STRENGTH, ddim_schedule

GOLDEN_UNET_STEP = 9  # the golden UNet input is the middle sampling step of the first held-out pair
Recordings = dict[str, list[Sample]]  # graph name -> its inputs, pair-major (pair k's step i is k * steps + i)


@dataclass
class Models:
    preset: Preset
    unet: nn.Module
    vae: nn.Module
    unet_weights: WeightsIdentity
    vae_weights: WeightsIdentity

    @property
    def random(self) -> list[WeightsIdentity]:
        return [w for w in (self.unet_weights, self.vae_weights) if w.is_random]


def load_models(model: str, weights: Path | None, vae: Path | None, seed: int) -> Models:
    preset = get_preset(model)
    weights, vae = default_weights(preset, weights, vae)
    unet_id, vae_id = weights_identity(weights, seed), weights_identity(vae, seed)
    return Models(preset, load_unet(preset, weights, seed), load_vae(preset, vae, seed), unet_id, vae_id)


def default_sampling_plan(preset: Preset) -> SamplingPlan:
    """The published sampling: DDIM 20 steps at strength 0.99 (19 run), guidance 2.0."""
    return sampling_plan(preset.unet.time_features, ddim_schedule(DEFAULT_STEPS, DEFAULT_STRENGTH), DEFAULT_GUIDANCE)


@dataclass
class Prepared:
    models: Models
    graphs: dict[str, GraphSpec]
    plan: SamplingPlan
    calib_pairs: list[ImagePair]
    eval_pairs: list[ImagePair]
    calibration: Recordings  # on calib_pairs: what quantizers calibrate on
    held_out: Recordings  # on eval_pairs: never calibrated on
    from_cache: bool

    def golden_inputs(self) -> dict[str, Sample]:
        """One held-out input per graph: the first pair's, at the middle sampling step for the UNet."""
        return {name: self.held_out[name][GOLDEN_UNET_STEP if name == "unet" else 0] for name in GRAPH_NAMES}


def prepare(models: Models, plan: SamplingPlan, calib_pairs: list[ImagePair], eval_pairs: list[ImagePair],
            on_pair: Callable[[int, int], None] = lambda done, total: None) -> Prepared:
    """The graphs, and the recordings of both pair sets (cached in $EDGE_CACHE). on_pair counts recorded pairs."""
    graphs = build_graphs(models.preset, models.unet, models.vae)
    total = len(calib_pairs) + len(eval_pairs)
    calibration, cached = _recordings(models, graphs, plan, calib_pairs, "calibration",
                                      lambda done, _: on_pair(done, total))
    held_out, _ = _recordings(models, graphs, plan, eval_pairs, "held-out",
                              lambda done, _: on_pair(len(calib_pairs) + done, total))
    return Prepared(models, graphs, plan, calib_pairs, eval_pairs, calibration, held_out, cached)


def _recordings(models: Models, graphs: dict[str, GraphSpec], plan: SamplingPlan, pairs: list[ImagePair], role: str,
                on_pair: Callable[[int, int], None]) -> tuple[Recordings, bool]:
    if not pairs:
        return {name: [] for name in GRAPH_NAMES}, True
    key = {"role": role, "model": models.preset.name, "unet": models.unet_weights.to_json(),
           "vae": models.vae_weights.to_json(), "pairs": pairs_digest(pairs), "size": models.preset.image_size,
           "timesteps": list(plan.schedule.timesteps), "guidance": plan.guidance}
    return cached_recordings(key, lambda: record(TorchGraphs(graphs), plan, pairs, models.preset.image_size, on_pair))
