"""The matrix's summary: one row per entry, as OUT/summary.json and as one self-contained table, OUT/summary.html.

A row: the entry's name, target, quant, recipe; its status ("passed", "gate failed", "error", or "pending" while
the run goes on or after it was interrupted); whether it was reused from an earlier run; the bundle's size, each
graph's SQNR, every gate's pass / fail / skipped, the masked PSNR against fp32 (worst pair), the UNet's median
time per call on this machine (where the target's runtime runs here), the error line if any
(and, for an error that is a bug rather than a bad input, its traceback), seconds (when it was built), and where
its result and report are, relative to OUT.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote

from edge.compile.graphs import GRAPH_NAMES
from edge.files import write_text_atomically
from edge.matrix.plan import Entry, Matrix

SUMMARY_JSON, SUMMARY_HTML = "summary.json", "summary.html"
SCHEMA = 1
STATUSES = ("passed", "gate failed", "error", "pending")
CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
td.number{text-align:right}.passed,.pass{color:#17803d;font-weight:600}.fail,.gate-failed,.error{color:#c0262d;
font-weight:600}.pending,.skipped{color:#888}code{font-size:12px}
"""


def entry_row(entry: Entry, result: dict | None = None, reused: bool = False, seconds: float | None = None,
              error: str | None = None, trace: str | None = None) -> dict:
    """The entry's row: from its result.json content, else its error line; with neither, still pending."""
    row = {"name": entry.name, "target": entry.target, "quant": entry.quant,
           "recipe": None if entry.recipe is None else str(entry.recipe), "status": "pending", "reused": reused,
           "bundle_mb": None, "sqnr_db": {}, "gates": {}, "masked_psnr_db": None, "unet_ms": None, "error": error, "seconds": seconds,
           "result": None, "report": None}
    if error is not None:
        return {**row, "status": "error", **({"traceback": trace} if trace else {})}
    if result is None:
        return row
    check = result["check"]
    return {**row, "status": "passed" if check["passed"] else "gate failed",
            "bundle_mb": round(result["compile"]["bundle_bytes"] / 1e6, 2),
            "sqnr_db": {name: check["metrics"][f"{name}_sqnr_db"] for name in GRAPH_NAMES},
            "gates": {gate["metric"]: gate["status"] for gate in check["gates"]},
            "masked_psnr_db": check["metrics"]["masked_psnr_db"],
            "unet_ms": result["speed"]["unet_median_ms"] if result.get("speed") else None,
            "result": f"{entry.name}/result.json", "report": f"{entry.name}/report.html"}


def summary_json(matrix: Matrix, out: Path, rows: list[dict]) -> dict:
    """summary.json's content (less its schema): every row in the matrix's order, and the counts."""
    counts = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    return {"command": "matrix", "matrix": str(matrix.source), "out": str(out),
            "passed": counts["passed"] == len(rows), "counts": {**counts, "reused": sum(row["reused"] for row in rows)},
            "entries": rows}


def write_summary(out: Path, summary: dict) -> None:
    write_text_atomically(out / SUMMARY_JSON, json.dumps({"schema": SCHEMA, **summary}, indent=1) + "\n")
    write_text_atomically(out / SUMMARY_HTML, render_summary(summary))


def _number(value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else f"{value:.4g}"  # "inf": identical outputs


def _gates(gates: dict[str, str]) -> str:
    if not gates:
        return "—"
    failed = [metric for metric, status in gates.items() if status == "fail"]
    passed = sum(status == "pass" for status in gates.values())
    shown = f"<span class='pass'>{passed} pass</span>"
    if failed:
        shown += "; <span class='fail'>fail: " + html.escape(", ".join(failed)) + "</span>"
    skipped = len(gates) - passed - len(failed)
    return shown + (f"; <span class='skipped'>{skipped} skipped</span>" if skipped else "")


def render_summary(summary: dict) -> str:
    """summary.html: the rows as one table (each entry's name links to its report.html); no script, nothing
    fetched."""
    esc = html.escape
    header = ["entry", "target", "quant", "recipe", "status", "run", "bundle MB",
              *(f"{name} SQNR dB" for name in GRAPH_NAMES), "masked PSNR dB", "UNet ms", "gates", "seconds", "error"]
    body = []
    for row in summary["entries"]:
        name = esc(row["name"])
        cells = [f"<a href='{esc(quote(row['report']))}'>{name}</a>" if row["report"] else name, esc(row["target"]),
                 esc(row["quant"]), f"<code>{esc(Path(row['recipe']).name)}</code>" if row["recipe"] else "—",
                 f"<span class='{row['status'].replace(' ', '-')}'>{esc(row['status'])}</span>",
                 "reused" if row["reused"] else "built" if row["status"] in ("passed", "gate failed") else "—"]
        numbers = [row["bundle_mb"], *(row["sqnr_db"].get(name) for name in GRAPH_NAMES), row["masked_psnr_db"], row["unet_ms"]]
        tail = [_gates(row["gates"]), f"<code>{esc(row['error'])}</code>" if row["error"] else ""]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells)
                    + "".join(f"<td class='number'>{esc(_number(value))}</td>" for value in numbers)
                    + f"<td>{tail[0]}</td><td class='number'>{esc(_number(row['seconds']))}</td><td>{tail[1]}</td></tr>")
    counts = summary["counts"]
    verdict = "PASS" if summary["passed"] else "FAIL"
    title = (f"edge matrix: {counts['passed']} passed, {counts['gate failed']} gate failed, {counts['error']} error"
             + (f", {counts['pending']} pending" if counts["pending"] else ""))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{esc(title)} <span class='{verdict.lower()}'>{verdict}</span></h1>"
            f"<p>matrix <code>{esc(summary['matrix'])}</code>, output <code>{esc(summary['out'])}</code>; "
            f"{counts['reused']} entr{'y' if counts['reused'] == 1 else 'ies'} reused from an earlier run</p>"
            "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" + "".join(body) + "</table>"
            "</body></html>\n")
