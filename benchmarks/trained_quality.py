"""Quality of moebius-tiny-trained in every target and quant mode, with the same architecture on random weights
beside it, and the gates of targets/*.toml re-derived from the trained measurements.

For each weights (trained: every quant mode; random: each target's default) x target x mode: `edge compile` (out/trained-quality/), then
`edge check --json` twice: on the held-out photographs of eval_data/ (5 pairs, never trained or calibrated
on) and on the held-out pair of calib_data/ (rocket: what CI's checks see). Both checks report the fp32
model's own error against the true pixels of each hole beside the bundle's. Then `edge sensitivity` (XNNPACK
int8, block groups) on both weights. Writes benchmarks/results/trained_quality.json, the TRAINED table in
benchmarks/README.md, and prints the proposed gates (RULE below) for pasting into targets/*.toml.

    .venv/bin/python benchmarks/trained_quality.py [--weights trained random] [--targets xnnpack ...] [--jobs 2] [--reuse]
        [--quants int4 ...] [--merge]   (--merge: measured rows replace theirs in the last results, the rest kept)
    .venv/bin/python benchmarks/trained_quality.py --rederive   (the gates again from the saved rows: a new mode's
        gates are derived for the metrics its [gates.MODE] table in targets/*.toml names)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from readme_section import write_section
from timing import run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EDGE = str(REPO / ".venv" / "bin" / "edge")
OUT = REPO / "out" / "trained-quality"
RESULTS = HERE / "results" / "trained_quality.json"
MODELS = {"trained": "moebius-tiny-trained", "random": "moebius-tiny"}
EVALS = {"eval_data": ["--eval", str(REPO / "eval_data")], "calib_heldout": []}
RULE = ("a gate is the worst value measured on the trained model over both evaluations (eval_data's 5 pairs and "
        "calib_data's rocket), less a margin: 3 dB for SQNR/PSNR, 0.03 for SSIM, the CFG ratio range widened by "
        "0.05 on each side and always holding 0.95..1.05 (a bundle that keeps the guidance must pass); "
        "unmasked_max_abs stays 0; LPIPS gates are kept (not measured here: no LPIPS weights)")


def quant_modes(weights: str) -> dict[str, list[str]]:
    """target -> the quant modes measured (`edge targets --json`): all for the trained weights, the default
    one for random weights (the row beside it; every mode would double the run)."""
    payload, _, _ = run([EDGE, "targets", "--json"])
    return {row["name"]: row["quant_modes"] if weights == "trained" else [row["default_quant"]]
            for row in payload["targets"]}


def measure(weights: str, target: str, quant: str, reuse: bool) -> dict:
    bundle = OUT / f"{weights}-{target}-{quant}"
    row = {"weights": weights, "target": target, "quant": quant}
    if not (reuse and (bundle / "manifest.json").is_file()):
        print(f"compile {weights} {target} {quant} ...", file=sys.stderr, flush=True)
        _, row["compile_s"], row["compile_peak_rss_gb"] = run(
            [EDGE, "compile", "--model", MODELS[weights], "--target", target, "--quant", quant, "-o", str(bundle),
             "--force", "--json"])
    for name, args in EVALS.items():
        print(f"check {weights} {target} {quant} on {name} ...", file=sys.stderr, flush=True)
        payload, seconds, _ = run([EDGE, "check", str(bundle), *args, "--json", "--report",
                                   str(OUT / f"{bundle.name}-{name}.html")], allowed=(0, 1))
        row[name] = {key: payload[key] for key in ("passed", "metrics", "ground_truth", "gates", "notices", "pairs")}
        row[name]["seconds"] = seconds
    return row


def sensitivity(weights: str) -> dict:
    ranking = HERE / "results" / f"sensitivity-{MODELS[weights]}-int8.json"
    print(f"sensitivity {weights} ...", file=sys.stderr, flush=True)
    _, seconds, _ = run([EDGE, "sensitivity", "--model", MODELS[weights], "--granularity", "block", "-o", str(ranking),
                         "--recipe", str(ranking.with_suffix(".recipe.toml")), "--json"])
    result = json.loads(ranking.read_text())
    return {"seconds": seconds, "all_quantized_sqnr_db": result["all_quantized_sqnr_db"],
            "ranking": [{k: row[k] for k in ("group", "gain_db", "only_db")} for row in result["ranking"]],
            "recipe_float": result["recipe"]["float_modules"]["unet"],
            "recipe_expected_sqnr_db": result["recipe"]["expected"]["unet_sqnr_db"]}


def worst(rows: list[dict], metric: str):
    values = [row[name]["metrics"][metric] for row in rows for name in EVALS]
    if metric == "cfg_ratio":
        return [min(v[0] for v in values), max(v[1] for v in values)]
    return min(math.inf if v == "inf" else v for v in values)


def proposed_gates(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """target -> quant -> metric -> gate, by RULE, from the trained rows."""
    gates: dict[str, dict[str, dict]] = {}
    for row in rows:
        if row["weights"] != "trained":
            continue
        current = tomllib.loads((REPO / "targets" / f"{row['target']}.toml").read_text())["gates"].get(row["quant"], {})
        derived = {}
        for metric, old in current.items():
            if metric in ("unmasked_max_abs", "lpips", "masked_lpips"):
                derived[metric] = old
                continue
            value = worst([row], metric)
            if metric.endswith("_db"):
                derived[metric] = 200 if value == math.inf else math.floor(value - 3)
            elif metric in ("masked_ssim", "ssim"):
                derived[metric] = math.floor((value - 0.03) * 100) / 100
            else:  # cfg_ratio
                derived[metric] = [min(math.floor((value[0] - 0.05) * 100) / 100, 0.95),
                                   max(math.ceil((value[1] + 0.05) * 100) / 100, 1.05)]
        gates.setdefault(row["target"], {})[row["quant"]] = derived
    return gates


def table(result: dict) -> list[str]:
    lines = [f"Measured {result['date']} on {result['machine']}, load average {result['load_average']} at the start; "
             "moebius-tiny (128x128) trained (`moebius-tiny-trained`) and random (seed 0). Each bundle checked "
             "against torch fp32 with the same weights on the 5 held-out photographs of `eval_data/` (mean over "
             "pairs for the hole-vs-truth columns, worst pair for the gated ones). *vs truth*: the hole of the "
             "result against the photograph's own pixels; the fp32 column is the model's own error, the bundle "
             "column what the device app would show.", "",
             "| target | mode | weights | UNet SQNR dB | worst step dB | encoder dB | decoder dB | masked PSNR vs fp32 dB "
             "| masked SSIM vs fp32 | hole PSNR vs truth: fp32 / bundle dB | gates in force when measured (eval_data / rocket) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(result["rows"], key=lambda r: (r["target"], r["quant"], r["weights"])):
        m, truth = row["eval_data"]["metrics"], row["eval_data"]["ground_truth"]["masked_psnr_db"]

        def verdict(name: str) -> str:
            gates = row[name]["gates"]
            failed = [g["metric"] for g in gates if g["status"] == "fail"]
            return "pass" if not failed else f"fail: {', '.join(failed)}"

        again = row.get("measured_again")
        mode = f"{row['quant']} (measured {again['date']}, load {again['load_average']})" if again else row["quant"]
        lines.append(f"| {row['target']} | {mode} | {row['weights']} | {m['unet_sqnr_db']} | "
                     f"{m['unet_worst_step_sqnr_db']} | {m['encoder_sqnr_db']} | {m['decoder_sqnr_db']} | "
                     f"{m['masked_psnr_db']} | {m['masked_ssim']} | {truth['fp32']} / {truth['bundle']} | "
                     f"{verdict('eval_data')} / {verdict('calib_heldout')} |")
    lines += ["", f"Gates re-derived from the trained rows ({RULE}); `targets/*.toml` carry them."]
    for weights, sens in result.get("sensitivity", {}).items():
        top = ", ".join(f"`{r['group']}` {r['gain_db']}" for r in sens["ranking"][:5])
        lines.append(f"- sensitivity, {weights}: all-int8 UNet {sens['all_quantized_sqnr_db']} dB; top groups (gain dB): "
                     f"{top}; recipe keeps {', '.join(f'`{m}`' for m in sens['recipe_float'])} float "
                     f"(predicted {sens['recipe_expected_sqnr_db']} dB).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--targets", nargs="+", default=[p.stem for p in sorted((REPO / "targets").glob("*.toml"))])
    parser.add_argument("--jobs", type=int, default=2, help="bundles measured at once (each with 1 torch thread)")
    parser.add_argument("--reuse", action="store_true", help="keep bundles already compiled in out/trained-quality")
    parser.add_argument("--no-sensitivity", action="store_true")
    parser.add_argument("--quants", nargs="+", help="only these quant modes (of each target that has them)")
    parser.add_argument("--merge", action="store_true",
                        help="merge the measured rows into the last results (a new mode, a rerun) instead of starting over")
    parser.add_argument("--rederive", action="store_true", help="only derive the gates again from the saved rows")
    args = parser.parse_args()
    if args.rederive:
        rederive()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"schema": 1, "benchmark": "trained_quality", "date": datetime.date.today().isoformat(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average": round(os.getloadavg()[0], 2), "jobs": args.jobs, "rule": RULE}
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # each edge process: one torch thread, jobs processes at once
    cases = [(w, t, q) for w in args.weights for t in args.targets for q in quant_modes(w)[t]
             if not args.quants or q in args.quants]
    with ThreadPoolExecutor(args.jobs) as pool:
        result["rows"] = list(pool.map(lambda case: measure(*case, args.reuse), cases))
    os.environ.pop("OMP_NUM_THREADS", None)
    if args.merge:
        result = merged(json.loads(RESULTS.read_text()), result)
    if not args.no_sensitivity:
        result["sensitivity"] = result.get("sensitivity", {}) | {w: sensitivity(w) for w in args.weights}
    save_with_gates(result)


def merged(previous: dict, new: dict) -> dict:
    """The last results with the new rows in place of theirs, each marked with its own date and load average."""
    def key(row: dict) -> tuple:
        return row["weights"], row["target"], row["quant"]

    for row in new["rows"]:
        row["measured_again"] = {"date": new["date"], "load_average": new["load_average"]}
    replaced = {key(row) for row in new["rows"]}
    return previous | {"rows": [row for row in previous["rows"] if key(row) not in replaced] + new["rows"]}


def rederive() -> None:
    """Recompute proposed_gates from the saved measurements (after a change of RULE, or a new mode's gate table in
    targets/*.toml), without measuring again."""
    result = json.loads(RESULTS.read_text())
    result["rule"] = RULE
    save_with_gates(result)


def save_with_gates(result: dict) -> None:
    """The gates derived from the rows, then the results file, the TRAINED table and the gates printed."""
    result["proposed_gates"] = proposed_gates(result["rows"])
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    write_section("TRAINED", "Trained model quality, every target and mode (`trained_quality.py`)", table(result))
    print(json.dumps(result["proposed_gates"], indent=1))


if __name__ == "__main__":
    main()
