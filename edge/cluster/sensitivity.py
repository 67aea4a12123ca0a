"""`edge sensitivity --ray`: the variants (one quantized graph each, its SQNR on the held-out samples) measured on
a Ray cluster.

The driver sets the ranking up as the serial run does (it needs the layer groups, and measures the suggested
recipe's mix at the end); each worker (a Ray actor) sets it up once too (the fp32 recordings come from
$EDGE_CACHE where the machine has them) and measures the variants it is handed. Values come back in the
variants' order, so the ranking and the recipe are the serial run's (with the same torch thread count).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from edge.cluster.session import RaySession, set_task_threads, with_absolute_paths
from edge.compile.recipe import Recipe
from edge.compile.sensitivity import SensitivityRequest, SensitivityResult, run_sensitivity, set_up_sensitivity


class SensitivityWorker:
    """One Ray worker's share of a ranking: the quantizer and the held-out samples built once."""

    def __init__(self, request: SensitivityRequest, threads: int):
        set_task_threads(threads)
        self.sqnr_with_float = set_up_sensitivity(request).sqnr_with_float

    def sqnr(self, float_modules: tuple[str, ...]) -> float:
        return self.sqnr_with_float(float_modules)


def run_sensitivity_on_ray(request: SensitivityRequest, session: RaySession, say: Callable[[str], None] = lambda _: None,
                           on_variant: Callable[[int, int], None] = lambda done, total: None
                           ) -> tuple[SensitivityResult, Recipe]:
    worker = (with_absolute_paths(request), session.threads)
    torch.set_num_threads(session.threads)  # the recipe's own measurement, here, as the workers measure

    def on_cluster(variants: list[tuple[str, ...]], on_done: Callable[[int, int], None]) -> list[float]:
        say(f"{len(variants)} variants on {min(session.slots, len(variants))} Ray worker(s)")
        return session.map_on_workers(SensitivityWorker, worker, "sqnr", variants, on_done)

    return run_sensitivity(request, say, on_variant, measure=on_cluster)
