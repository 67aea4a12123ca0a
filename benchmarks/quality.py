"""Quality of the full-size XNNPACK bundles (`edge check`) and the effect of a sensitivity recipe, in one run.

1. `edge sensitivity` on moebius-0.22b int8 (block granularity) -> ranking JSON + recipe (kept in
   benchmarks/results/), unless --reuse and they exist;
2. `edge compile --recipe` -> out/bench-int8-recipe (the plain bundles come from xnnpack.py: out/bench-*);
3. `edge check --json` on every bundle (held-out split of calib_data), reports in out/quality/.
Writes benchmarks/results/quality.json and the QUALITY table in benchmarks/README.md.

    .venv/bin/python benchmarks/quality.py [--reuse]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from readme_section import write_section
from timing import run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EDGE = str(REPO / ".venv" / "bin" / "edge")
MODES = ("fp32", "int8", "int8-dynamic", "int8-recipe")
RANKING = HERE / "results" / "sensitivity-moebius-0.22b-int8.json"
RECIPE = HERE / "results" / "moebius-0.22b-int8.recipe.toml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="store_true", help="reuse the ranking, recipe and recipe bundle if present")
    args = parser.parse_args()
    out = REPO / "out"
    (out / "quality").mkdir(parents=True, exist_ok=True)
    missing = [m for m in MODES[:3] if not (out / f"bench-{m}" / "manifest.json").is_file()]
    if missing:
        raise SystemExit(f"run benchmarks/xnnpack.py first: out/bench-{missing[0]} is missing")

    sensitivity = {}
    if not (args.reuse and RANKING.is_file() and RECIPE.is_file()):
        print("edge sensitivity ...", file=sys.stderr, flush=True)
        _, seconds, rss = run([EDGE, "sensitivity", "--model", "moebius-0.22b", "--granularity", "block",
                               "--calibration-samples", "4", "-o", str(RANKING), "--recipe", str(RECIPE), "--json"])
        sensitivity = {"seconds": seconds, "peak_rss_gb": rss}
    ranking = json.loads(RANKING.read_text())

    recipe_bundle = out / "bench-int8-recipe"
    compiled = {}
    if not (args.reuse and (recipe_bundle / "manifest.json").is_file()):
        print("edge compile --recipe ...", file=sys.stderr, flush=True)
        summary, seconds, rss = run([EDGE, "compile", "--target", "xnnpack", "--model", "moebius-0.22b", "--recipe",
                                     str(RECIPE), "-o", str(recipe_bundle), "--force", "--json"])
        compiled = {"seconds": seconds, "peak_rss_gb": rss, "unet_lowering_s": summary["graphs"]["unet"]["seconds"]}

    checks = {}
    for mode in MODES:
        print(f"edge check {mode} ...", file=sys.stderr, flush=True)
        payload, seconds, rss = run([EDGE, "check", str(out / f"bench-{mode}"), "--json",
                                     "--report", str(out / "quality" / f"{mode}.html")], allowed=(0, 1))
        payload.update(seconds=seconds, peak_rss_gb=rss,
                       unet_pte_mb=round((out / f"bench-{mode}" / "unet.pte").stat().st_size / 1e6, 1))
        checks[mode] = payload
    result = {"schema": 1, "benchmark": "quality", "model": "moebius-0.22b", "weights": "random seed 0",
              "date": datetime.date.today().isoformat(), "sensitivity": {**sensitivity, **ranking},
              "recipe_compile": compiled, "checks": checks}
    (HERE / "results" / "quality.json").write_text(json.dumps(result, indent=1) + "\n")
    write_table(result)


def _value(value) -> str:
    return "..".join(str(v) for v in value) if isinstance(value, list) else str(value)


def write_table(result: dict) -> None:
    checks = result["checks"]
    lines = [f"Measured {result['date']}, {result['model']} ({result['weights']}), 512x512, 2 threads; "
             "`edge check` of each bundle on the held-out pair of `calib_data/` (rocket), against torch fp32. "
             "PSNR/SSIM: the final pictures at their own size; gates: `targets/xnnpack.toml` for the bundle's mode "
             "(int8-recipe is gated as int8). LPIPS skipped (no weights here).", "",
             "| bundle | gates | UNet SQNR dB | worst step dB | encoder dB | decoder dB | CFG ratio | masked PSNR dB | "
             "PSNR dB | masked SSIM | unmasked max abs | UNet .pte MB | check s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, check in checks.items():
        m = check["metrics"]
        passed = sum(g["status"] == "pass" for g in check["gates"])
        gated = sum(g["status"] != "skipped" for g in check["gates"])
        failed = [g["metric"] for g in check["gates"] if g["status"] == "fail"]
        verdict = f"{passed}/{gated}" + (f" (fail: {', '.join(failed)})" if failed else "")
        lines.append(f"| {mode} | {verdict} | {m['unet_sqnr_db']} | {m['unet_worst_step_sqnr_db']} | {m['encoder_sqnr_db']} | "
                     f"{m['decoder_sqnr_db']} | {_value(m['cfg_ratio'])} | {m['masked_psnr_db']} | {m['psnr_db']} | "
                     f"{m['masked_ssim']} | {m['unmasked_max_abs']} | {check['unet_pte_mb']} | {check['seconds']} |")
    sensitivity = result["sensitivity"]
    recipe = sensitivity["recipe"]
    plain, mixed = checks["int8"], checks["int8-recipe"]
    lines += ["", f"Sensitivity (`edge sensitivity --granularity block`, {sensitivity['calibration_samples']} calibration and "
              f"{sensitivity['eval_samples']} held-out UNet samples, the XNNPACK quantizer run in torch"
              + (f", {sensitivity['seconds']} s" if "seconds" in sensitivity else "") + "): all-int8 UNet "
              f"{sensitivity['all_quantized_sqnr_db']} dB. Most sensitive groups (gain = SQNR when only this group "
              "stays float, minus all-int8; alone = SQNR when only this group is int8):", "",
              "| group | weights (M) | float cost MB | gain dB | alone dB |", "|---|---|---|---|---|"]
    for row in sensitivity["ranking"][:8]:
        lines.append(f"| `{row['group']}` | {row['weights'] / 1e6:.2f} | {row['float_cost_mb']} | {row['gain_db']} | {row['only_db']} |")
    lines += ["", f"Recipe (`{RECIPE.relative_to(REPO)}`, float_fraction {recipe['expected']['float_fraction']}): keeps "
              f"{', '.join(f'`{m}`' for m in recipe['float_modules']['unet'])} float. Predicted UNet SQNR "
              f"{recipe['expected']['unet_sqnr_db']} dB; measured on the compiled bundle: **{plain['metrics']['unet_sqnr_db']} -> "
              f"{mixed['metrics']['unet_sqnr_db']} dB** UNet SQNR, masked PSNR {plain['metrics']['masked_psnr_db']} -> "
              f"{mixed['metrics']['masked_psnr_db']} dB, at **{plain['unet_pte_mb']} -> {mixed['unet_pte_mb']} MB** UNet .pte."]
    write_section("QUALITY", "Quality (`quality.py`)", lines)


if __name__ == "__main__":
    main()
