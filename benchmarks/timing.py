"""Shared timing discipline of the benchmark scripts: warm-up, then the median of timed runs; one edge
command in its own process, timed, with its peak RSS."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time

import torch


def measure(fn, runs: int, warmup: int = 1, digits: int = 3) -> dict:
    """Median, min and max seconds of `runs` calls after `warmup` untimed ones, rounded to `digits`."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), digits), "min_s": round(min(seconds), digits),
            "max_s": round(max(seconds), digits), "runs": runs}


def run(command: list[str], allowed=(0,)) -> tuple[dict, float, float]:
    """(JSON stdout, seconds, peak RSS GB) of one edge command in its own process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in allowed:
        raise SystemExit(f"{' '.join(command[:3])} failed with exit {code}")
    return json.loads(output), round(time.perf_counter() - started, 1), round(usage.ru_maxrss / 1e6, 2)
