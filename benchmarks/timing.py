"""Shared timing discipline of the benchmark scripts: warm-up, then the median of timed runs."""

from __future__ import annotations

import statistics
import time

import torch


def measure(fn, runs: int, warmup: int = 1) -> dict:
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "runs": runs}
