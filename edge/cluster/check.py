"""`edge check --ray`: the evaluation pairs measured on a Ray cluster, merged exactly as the serial run merges them.

Each worker (a Ray actor) validates the request and loads the fp32 model and the bundle once, then measures the
pairs it is handed one at a time (edge.quality.check.PairMeter): pairs are read by the workers from their paths,
and only the per-pair measurements (error sums, metrics, the pictures for the report) come back. The driver
merges them in pair order (merge_measurements), so the result, the report and the JSON are the serial run's.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.cluster.session import RaySession, set_task_threads, with_absolute_paths
from edge.quality.check import CheckPlan, CheckRequest, CheckResult, PairMeasurement, PairMeter, merge_measurements, plan_check


class CheckWorker:
    """One Ray worker's share of a check: the request validated and both pipelines built once."""

    def __init__(self, request: CheckRequest, threads: int):
        set_task_threads(threads)
        self.meter = PairMeter(plan_check(request))

    def measure(self, index: int) -> PairMeasurement:
        return self.meter.measure(index)


def run_check_on_ray(request: CheckRequest, check: CheckPlan, session: RaySession,
                     on_pair: Callable[[int, int], None] = lambda done, total: None) -> CheckResult:
    """check (planned here from request, so bad input stops before any worker starts), its pairs on the cluster."""
    pairs = list(range(len(check.pairs)))
    worker = (with_absolute_paths(request), session.threads)
    measurements = session.map_on_workers(CheckWorker, worker, "measure", pairs, on_pair)
    return merge_measurements(check, measurements)
