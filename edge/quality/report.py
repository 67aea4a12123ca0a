"""report.html for `edge check`: one self-contained file (pictures as data URIs, charts as inline SVG)
that any browser opens from disk, with no server and nothing fetched."""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
from PIL import Image

from edge.quality.check import CheckResult
from edge.quality.gates import METRICS

DIFF_GAIN = 8  # the heat map shows |bundle - fp32| x 8, so an error of 1/8 of full scale is saturated
REPORT_SIDE = 384  # pictures are shown at most this many pixels on their longest side
HEAT_COLORS = np.array([[0, 0, 0], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.pass{color:#17803d;font-weight:600}.fail{color:#c0262d;font-weight:600}.skipped{color:#888}
.pair{display:flex;gap:8px;flex-wrap:wrap}.pair figure{margin:0}.pair img{max-width:300px;display:block}
figcaption{font-size:12px;color:#555}.notice{background:#fff6d6;padding:6px 10px;border-left:4px solid #e0b000}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""


def data_uri(picture: Image.Image) -> str:
    picture = picture.copy()
    picture.thumbnail((REPORT_SIDE, REPORT_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def heat_map(reference: Image.Image, result: Image.Image) -> Image.Image:
    """|result - reference| averaged over channels, amplified by DIFF_GAIN, through a dark-to-yellow ramp."""
    difference = np.abs(np.asarray(result, np.float64) - np.asarray(reference, np.float64)).mean(-1) / 255  # (H, W)
    level = np.clip(difference * DIFF_GAIN, 0, 1) * (len(HEAT_COLORS) - 1)
    anchors = np.arange(len(HEAT_COLORS))
    rgb = np.stack([np.interp(level, anchors, HEAT_COLORS[:, c]) for c in range(3)], axis=-1)  # (H, W, 3)
    return Image.fromarray(rgb.round().astype(np.uint8))


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return "..".join(_number(v) for v in value)
    return "inf" if math.isinf(value) else f"{value:.4g}"


def line_chart(title: str, labels: list, series: dict[str, list[float]], band: tuple[float, float] | None = None,
               width: int = 560, height: int = 220) -> str:
    """An inline SVG line chart; infinite values are drawn at the top edge."""
    left, right, top, bottom = 48, 12, 24, 36
    finite = [v for values in series.values() for v in values if math.isfinite(v)] + list(band or ())
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    low, high = (low - 1, high + 1) if high - low < 1e-9 else (low - 0.05 * (high - low), high + 0.05 * (high - low))
    count = max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return left + (width - left - right) * i / count

    def y(v: float) -> float:
        v = high if not math.isfinite(v) else v
        return top + (height - top - bottom) * (high - v) / (high - low)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{left}" y="14" font-weight="600">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#bbb"/>']
    for k in range(5):
        value = low + (high - low) * k / 4
        parts.append(f'<text x="{left - 4}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    for i, label in enumerate(labels):
        if i % max(1, len(labels) // 8) == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 14}" text-anchor="middle">{html.escape(str(label))}</text>')
    if band:
        for bound in band:
            parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(bound):.1f}" y2="{y(bound):.1f}" stroke="#c0262d" stroke-dasharray="4 3"/>')
    for (name, values), color in zip(series.items(), ("#1f5fbf", "#e07b00", "#17803d"), strict=False):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        legend_x = width - right - 48 * (len(series) - 1 - list(series).index(name))  # legend above the plot, right-aligned
        parts.append(f'<text x="{legend_x}" y="14" text-anchor="end" fill="{color}">{html.escape(name)}</text>')
    parts.append(f'<text x="{(width + left) / 2}" y="{height - 4}" text-anchor="middle">timestep (sampling order)</text></svg>')
    return "".join(parts)


def bar_chart(title: str, values: dict[str, float], width: int = 360, height: int = 180) -> str:
    left, top, bottom = 48, 24, 30
    finite = [v for v in values.values() if math.isfinite(v)]
    high = max(finite + [1.0]) * 1.1
    slot = (width - left - 10) / len(values)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{left}" y="14" font-weight="600">{html.escape(title)}</text>']
    for i, (name, value) in enumerate(values.items()):
        shown = high if not math.isfinite(value) else max(value, 0.0)
        bar = (height - top - bottom) * shown / high
        x0 = left + i * slot + slot * 0.2
        parts.append(f'<rect x="{x0:.1f}" y="{height - bottom - bar:.1f}" width="{slot * 0.6:.1f}" height="{bar:.1f}" fill="#1f5fbf"/>')
        parts.append(f'<text x="{x0 + slot * 0.3:.1f}" y="{height - bottom - bar - 4:.1f}" text-anchor="middle">{_number(value)}</text>')
        parts.append(f'<text x="{x0 + slot * 0.3:.1f}" y="{height - 10}" text-anchor="middle">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(result: CheckResult) -> str:
    manifest = result.bundle.manifest
    verdict = "PASS" if result.passed else "FAIL"
    esc = html.escape
    sections = [f"<h1>edge check: {esc(manifest.model)} for {esc(manifest.target)} {esc(manifest.quant)} "
                f"<span class='{verdict.lower()}'>{verdict}</span></h1>",
                f"<p>bundle <code>{esc(str(result.bundle.path))}</code>; eval pairs "
                f"{esc(', '.join(result.evaluation['pairs']))} from <code>{esc(result.evaluation['folder'])}</code></p>"]
    sections += [f"<p class='notice'>{esc(n)}</p>" for n in result.notices]
    sections.append("<h2>Gates</h2>" + _table(["metric", "what", "threshold", "value", "status"], [
        [esc(g.metric), esc(METRICS[g.metric][1]), esc(g.threshold.describe()), _number(g.value), f"<span class='{g.status}'>{g.status}</span>"]
        for g in result.gates]))
    sections.append("<h2>Against the true pixels of the holes (mean over pairs; not gated)</h2>" + _table(
        ["metric", "fp32 model", "this bundle"],
        [[esc(name), _number(v["fp32"]), _number(v["bundle"])] for name, v in result.ground_truth.items()]))
    sections.append("<h2>Per graph (fp32 pipeline's recorded held-out inputs)</h2>" + _table(
        ["graph", "SQNR dB", "max abs", "samples"],
        [[name, _number(g["sqnr_db"]), _number(g["max_abs"]), str(g["samples"])] for name, g in result.graphs.items()]))
    sections.append(bar_chart("SQNR vs fp32 per graph (dB)", {n: g["sqnr_db"] for n, g in result.graphs.items()}))
    timesteps = [s["timestep"] for s in result.unet_steps]
    cfg_band = next(((g.threshold.low, g.threshold.high) for g in result.gates if g.metric == "cfg_ratio"), None)
    sections.append("<h2>UNet per timestep</h2>" + line_chart(
        "UNet SQNR vs fp32 (dB)", timesteps, {"SQNR": [s["sqnr_db"] for s in result.unet_steps]}))
    sections.append(line_chart("CFG ratio (bundle guidance / fp32 guidance)", timesteps,
                               {"mean": [s["cfg_ratio"] for s in result.unet_steps],
                                "min": [s["cfg_ratio_min"] for s in result.unet_steps],
                                "max": [s["cfg_ratio_max"] for s in result.unet_steps]}, cfg_band))
    sections.append(_table(["step", "timestep", "SQNR dB", "max abs", "CFG ratio"], [
        [str(s["step"]), str(s["timestep"]), _number(s["sqnr_db"]), _number(s["max_abs"]), _number(s["cfg_ratio"])]
        for s in result.unet_steps]))
    sections.append(f"<h2>Eval pairs (same start noise; difference x{DIFF_GAIN})</h2>")
    for pair in result.pairs:
        figures = [("input", pair.picture), ("mask", pair.mask), ("fp32 torch", pair.reference),
                   (f"{manifest.target} {manifest.quant}", pair.result),
                   (f"|difference| x{DIFF_GAIN}", heat_map(pair.reference, pair.result))]
        metrics = ", ".join(f"{k} {_number(v)}" for k, v in pair.metrics.items())
        sections.append(f"<h3>{esc(pair.name)}</h3><p>{esc(metrics)}</p><div class='pair'>" + "".join(
            f"<figure><img alt='{esc(pair.name)} {esc(caption)}' src='{data_uri(picture)}'><figcaption>{esc(caption)}</figcaption></figure>"
            for caption, picture in figures) + "</div>")
    sections.append("<h2>Manifest</h2>" + _table(["", ""], [
        ["weights", esc(f"unet: {manifest.weights.unet.describe()}; vae: {manifest.weights.vae.describe()}")],
        ["calibration", esc(f"{', '.join(manifest.calibration.pairs)} (held out: {', '.join(manifest.calibration.held_out)})")],
        ["tools", esc(", ".join(f"{k} {v}" for k, v in manifest.tools.items()))],
        *[[f"graph {esc(name)}", esc(f"{g.file}: {g.report.get('partitions')} partition(s); float: "
                                     f"{', '.join(g.recipe.float_ops)}"
                                     + (f"; float modules: {', '.join(g.recipe.float_modules)}" if g.recipe.float_modules else ""))]
          for name, g in manifest.graphs.items()]]))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>edge check {verdict}</title>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>\n")
