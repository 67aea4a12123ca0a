"""Quality gates: thresholds on `edge check` metrics, per target profile and quant mode.

A profile sets them in `[gates.<quant mode>]`; a TOML file (`edge check --gates FILE`, flat
`metric = threshold` lines) and `--gate metric=threshold` override them, in that order. A threshold
is a number (a bound in the metric's direction), a band `[low, high]` or `"low..high"` (cfg_ratio), or
"off". A gate on a metric that was not measured (LPIPS without weights) is skipped, not failed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

# metric -> (direction, what it is); "min": value >= threshold, "max": value <= threshold,
# "band": every value within [low, high]
METRICS: dict[str, tuple[str, str]] = {
    "encoder_sqnr_db": ("min", "encoder SQNR vs fp32 on held-out inputs (dB)"),
    "unet_sqnr_db": ("min", "UNet SQNR vs fp32 over all held-out steps (dB)"),
    "unet_worst_step_sqnr_db": ("min", "UNet SQNR at its worst timestep (dB)"),
    "decoder_sqnr_db": ("min", "decoder SQNR vs fp32 on held-out inputs (dB)"),
    "cfg_ratio": ("band", "guidance kept: bundle ||cond - uncond|| / fp32's, every step"),
    "masked_psnr_db": ("min", "PSNR inside the mask vs the fp32 pipeline, worst pair (dB)"),
    "psnr_db": ("min", "PSNR of the whole picture vs the fp32 pipeline, worst pair (dB)"),
    "masked_ssim": ("min", "SSIM inside the mask, worst pair"),
    "ssim": ("min", "SSIM of the whole picture, worst pair"),
    "unmasked_max_abs": ("max", "largest change outside the blurred mask (0..255 levels)"),
    "lpips": ("max", "LPIPS (AlexNet) of the whole picture, worst pair"),
    "masked_lpips": ("max", "LPIPS of the mask's bounding box, worst pair"),
}


@dataclass(frozen=True)
class Threshold:
    metric: str
    low: float = -math.inf
    high: float = math.inf

    def passes(self, value: float | list[float]) -> bool:
        values = value if isinstance(value, list) else [value]
        return all(self.low <= v <= self.high for v in values)

    def describe(self) -> str:
        if METRICS[self.metric][0] == "band":
            return f"{self.low:g}..{self.high:g}"
        return f">= {self.low:g}" if METRICS[self.metric][0] == "min" else f"<= {self.high:g}"


@dataclass(frozen=True)
class GateResult:
    metric: str
    threshold: Threshold
    value: float | list[float] | None
    status: str  # "pass", "fail" or "skipped"

    def to_json(self) -> dict:
        return {"metric": self.metric, "threshold": self.threshold.describe(), "value": self.value, "status": self.status}


def parse_threshold(metric: str, raw: object, source: str) -> Threshold | None:
    """One threshold from TOML or the command line; None for "off"."""
    if metric not in METRICS:
        raise EdgeError(f"{source}: unknown gate metric '{metric}' (known: {', '.join(METRICS)})")
    direction = METRICS[metric][0]
    if raw == "off":
        return None
    try:
        if direction == "band":
            low, high = raw.split("..") if isinstance(raw, str) else raw
            return Threshold(metric, float(low), float(high))
        bound = float(raw)
    except (TypeError, ValueError) as err:
        form = "low..high or [low, high]" if direction == "band" else "a number"
        raise EdgeError(f"{source}: gate {metric} = {raw!r} is not {form} (or off)") from err
    return Threshold(metric, low=bound) if direction == "min" else Threshold(metric, high=bound)


def resolve_gates(profile_gates: dict[str, object], profile_source: str, gates_file: Path | None,
                  overrides: tuple[str, ...]) -> dict[str, Threshold]:
    """Profile gates, then the file's, then each --gate metric=threshold."""
    layers: list[tuple[str, dict[str, object]]] = [(profile_source, profile_gates)]
    if gates_file is not None:
        try:
            layers.append((str(gates_file), tomllib.loads(Path(gates_file).read_text())))
        except FileNotFoundError as err:
            raise EdgeError(f"{gates_file}: no such gates file") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise EdgeError(f"{gates_file}: not valid TOML ({err})") from err
    for item in overrides:
        metric, sep, raw = item.partition("=")
        if not sep:
            raise EdgeError(f"--gate {item}: expected metric=threshold")
        layers.append((f"--gate {item}", {metric.strip(): raw.strip()}))
    gates: dict[str, Threshold] = {}
    for source, table in layers:
        for metric, raw in table.items():
            threshold = parse_threshold(metric, raw, source)
            if threshold is None:
                gates.pop(metric, None)
            else:
                gates[metric] = threshold
    return gates


def evaluate_gates(gates: dict[str, Threshold], metrics: dict[str, float | list[float] | None]) -> list[GateResult]:
    results = []
    for metric, threshold in gates.items():
        value = metrics.get(metric)
        status = "skipped" if value is None else ("pass" if threshold.passes(value) else "fail")
        results.append(GateResult(metric, threshold, value, status))
    return results
