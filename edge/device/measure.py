"""Measurement discipline shared by every profiler: warm-up, timed runs, cool-down, summary statistics.

A summary is what on-device benchmarking tools print: median, p90, min, max, coefficient of
variation and a trimmed mean (the middle 80% of the runs), all in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

UNSTABLE_CV = 0.10  # a coefficient of variation above this gets a warning: the runs disagree
TRIM_FRACTION = 0.10  # dropped from each end for the trimmed mean


@dataclass(frozen=True)
class Settings:
    runs: int = 10
    warmup: int = 3
    threads: int | None = None  # None: the runtime's default
    cooldown_s: float = 2.0  # sleep between graphs, so one graph's heat does not slow the next

    def to_json(self) -> dict:
        return {"runs": self.runs, "warmup": self.warmup, "threads": self.threads, "cooldown_s": self.cooldown_s}


def summarize(samples_ms: list[float]) -> dict:
    """Statistics of timed runs (ms); the samples are kept for later analysis."""
    ordered = sorted(samples_ms)
    count = len(ordered)
    mean = statistics.fmean(ordered)
    trim = int(count * TRIM_FRACTION)
    trimmed = ordered[trim: count - trim] if count - 2 * trim > 0 else ordered
    p90 = ordered[min(count - 1, max(0, -(-9 * count // 10) - 1))]  # nearest-rank 90th percentile
    return {"runs": count, "median_ms": round(statistics.median(ordered), 3), "p90_ms": round(p90, 3),
            "min_ms": round(ordered[0], 3), "max_ms": round(ordered[-1], 3),
            "cv": round(statistics.pstdev(ordered) / mean, 4) if mean > 0 else 0.0,
            "trimmed_mean_ms": round(statistics.fmean(trimmed), 3), "samples_ms": [round(s, 3) for s in samples_ms]}


def time_calls(call: Callable[[], object], settings: Settings) -> tuple[float, dict]:
    """(first call ms, summary of `runs` timed calls after `warmup` untimed ones; the first is a warm-up)."""
    started = time.perf_counter()
    call()
    first_ms = (time.perf_counter() - started) * 1000
    for _ in range(max(0, settings.warmup - 1)):
        call()
    samples = []
    for _ in range(settings.runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return first_ms, summarize(samples)


def unstable(summary: dict) -> bool:
    return summary["cv"] > UNSTABLE_CV


def cool_down(settings: Settings) -> None:
    if settings.cooldown_s > 0:
        time.sleep(settings.cooldown_s)


class PeakRss:
    """This process's peak resident memory (Linux VmHWM), reset at the start of a measured span."""

    STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def reset(self) -> None:
        try:
            self.CLEAR_REFS.write_text("5")  # "5" resets the peak RSS counter
        except OSError:
            pass  # not Linux, or not allowed: the peak then covers the whole process

    def current_mb(self) -> float | None:
        return self._field("VmRSS")

    def peak_mb(self) -> float | None:
        return self._field("VmHWM")

    def _field(self, name: str) -> float | None:
        try:
            for line in self.STATUS.read_text().splitlines():
                if line.startswith(name + ":"):
                    return round(int(line.split()[1]) / 1024, 1)  # "VmHWM:  123456 kB"
        except OSError:
            return None
        return None
