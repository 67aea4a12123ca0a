"""LiteRT and Vulkan bundles at full size (moebius-0.22b, random weights).

Phase 1 compiles one bundle per mode, each in its own `edge compile` process (one at a time), recording
wall time, peak RSS, sizes and the lowering report (XNNPACK partitions and op histogram for LiteRT;
Vulkan partitions and delegated fraction). LiteRT converts each graph to fp32 once (cached in
$EDGE_CACHE/tflite), so the first mode pays the conversion and the others only their recipe.
Phase 2 times the UNet at batch 2 on its golden input, torch eager fp32 and every LiteRT mode in this
one process (median of --runs after a warm-up), and SQNR against torch fp32 on that input.
Phase 3 runs `edge check --json` on each mode in --check-modes (UNet SQNR over all 19 steps of the
held-out pair, masked PSNR of the end-to-end inpaint); for Vulkan it measures the numerics proxy (the prepared graphs in torch fp32).
Writes benchmarks/results/litert_vulkan.json and the LITERT_VULKAN table in benchmarks/README.md.

    PYTHONPATH=. python benchmarks/litert_vulkan.py [--runs 3] [--tflite-modes ...] [--vulkan-modes ...]
                                                    [--tflite-recipe RECIPE] [--check-modes tflite:int8 ...] [--reuse]

--tflite-recipe adds a "tflite:int8-recipe" bundle: static int8 with the recipe's modules kept float
(`edge sensitivity --target tflite` writes one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from readme_section import write_section
from timing import measure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "litert_vulkan.json"
EDGE = [sys.executable, "-c", "import sys; sys.argv[0] = 'edge'; from edge.cli import main; main()"]


def edge_json(args: list[str], ok_codes=(0,)) -> tuple[dict, float, float]:
    """(the command's --json output, wall seconds, peak RSS GB) of one edge command in its own process."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([*EDGE, *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) not in ok_codes:
        raise SystemExit(f"edge {' '.join(args)} failed ({status})")
    return json.loads(output), round(time.perf_counter() - started, 1), round(usage.ru_maxrss / 1e6, 2)


def previous() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def compile_mode(key: str, out: Path, reuse: bool, recipe: Path | None) -> dict:
    """Compile bundle `key` ("target:mode", mode "int8-recipe" being int8 with `recipe`) into `out`."""
    if reuse and (out / "manifest.json").is_file() and key in previous().get("compile", {}):
        return previous()["compile"][key]
    print(f"compiling {key} ...", file=sys.stderr, flush=True)
    target, mode = key.split(":")
    quant = ["--quant", mode] if mode != "int8-recipe" else ["--quant", "int8", "--recipe", str(recipe)]
    result, seconds, rss = edge_json(["compile", "--target", target, *quant, "--model", "moebius-0.22b",
                                      "-o", str(out), "--force"])
    sizes = {name: round(out.joinpath(graph["file"]).stat().st_size / 1e6, 1) for name, graph in result["graphs"].items()}
    graphs = {name: {k: graph.get(k) for k in ("partitions", "delegated_fraction", "ops", "golden_sqnr_db", "seconds",
                                                "fp32_conversion")} for name, graph in result["graphs"].items()}
    for name, graph in result["graphs"].items():
        histogram = graph.get("op_histogram", {})
        graphs[name]["transpose_reshape"] = [histogram.get("TRANSPOSE", 0), histogram.get("RESHAPE", 0)]
        graphs[name]["ops_outside_delegates"] = graph.get("ops_outside_delegates")
    return {"seconds": seconds, "peak_rss_gb": rss, "size_mb": sizes, "graphs": graphs,
            "unet_op_histogram": result["graphs"]["unet"].get("op_histogram")}


def time_unets(bundles: dict[str, Path], runs: int) -> dict:
    from edge.bundle.bundle import open_bundle
    from edge.bundle.runner import BundleGraphs
    from edge.compile.graphs import build_graphs
    from edge.models import get_preset, load_unet, load_vae
    from edge.pipeline.loop import TorchGraphs
    from edge.quality.metrics import sqnr_db

    preset = get_preset("moebius-0.22b")
    inputs, _, reference = open_bundle(next(iter(bundles.values()))).golden_case("unet")
    runners = {"torch eager fp32": lambda: TorchGraphs(build_graphs(preset, load_unet(preset), load_vae(preset)))}
    runners.update({label: lambda path=path: BundleGraphs(open_bundle(path)) for label, path in bundles.items()})
    rows = {}
    for label, make in runners.items():  # one runner in memory at a time
        print(f"timing {label} ...", file=sys.stderr, flush=True)
        denoise = make().denoise
        with torch.no_grad():
            rows[label] = {"unet_s": measure(lambda: denoise(*inputs), runs)["median_s"],
                           "unet_sqnr_db": round(sqnr_db(reference, denoise(*inputs)), 2)}
    eager = rows["torch eager fp32"]["unet_s"]
    for row in rows.values():
        row["speedup_vs_eager"] = round(eager / row["unet_s"], 2)
    return rows


def check_mode(bundle: Path, reuse_key: str, reuse: bool) -> dict:
    if reuse and reuse_key in previous().get("check", {}):
        return previous()["check"][reuse_key]
    print(f"edge check {reuse_key} ...", file=sys.stderr, flush=True)
    result, seconds, _ = edge_json(["check", str(bundle), "--report", str(bundle.parent / f"{bundle.name}-report.html")],
                                   ok_codes=(0, 1))
    metrics = result["metrics"]
    return {"seconds": seconds, "passed": result["passed"], "notices": result["notices"][:1],
            **{k: metrics[k] for k in ("encoder_sqnr_db", "unet_sqnr_db", "unet_worst_step_sqnr_db", "decoder_sqnr_db",
                                       "masked_psnr_db", "cfg_ratio")}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tflite-modes", nargs="*", default=["fp32", "fp16", "int8-weight", "int8-dynamic", "int8"])
    parser.add_argument("--vulkan-modes", nargs="*", default=["fp16", "fp32"])
    parser.add_argument("--tflite-recipe", type=Path, help="also compile static int8 with this recipe")
    parser.add_argument("--check-modes", nargs="*", default=["tflite:int8", "tflite:fp32"])
    parser.add_argument("--reuse", action="store_true", help="reuse bundles (and their numbers) already in out/")
    args = parser.parse_args()
    for noisy in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    (REPO / "out").mkdir(exist_ok=True)
    bundles = {f"tflite:{m}": REPO / "out" / f"bench-tflite-{m}" for m in args.tflite_modes}
    if args.tflite_recipe:
        bundles["tflite:int8-recipe"] = REPO / "out" / "bench-tflite-int8-recipe"
    bundles.update({f"vulkan:{m}": REPO / "out" / f"bench-vulkan-{m}" for m in args.vulkan_modes})
    compiled = {key: compile_mode(key, path, args.reuse, args.tflite_recipe) for key, path in bundles.items()}
    result = {"schema": 1, "benchmark": "litert_vulkan", "model": "moebius-0.22b", "weights": "random seed 0",
              "date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores",
              "threads": torch.get_num_threads(), "compile": compiled}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**previous(), **result}, indent=1) + "\n")  # keep phase 1 if a later one dies

    tflite = {key: path for key, path in bundles.items() if key.startswith("tflite:")}
    result["runtime"] = time_unets(tflite, args.runs) if tflite else {}
    result["check"] = {key: check_mode(bundles[key], key, args.reuse) for key in args.check_modes if key in bundles}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    write_table(result)
    print(json.dumps(result, indent=1))


def write_table(result: dict) -> None:
    lines = [f"Measured {result['date']} on this machine ({result['machine']}, {result['threads']} torch threads; "
             f"LiteRT interpreter with the same thread count), {result['model']} ({result['weights']}), 512x512. "
             "Compile: one `edge compile` process per mode, run one after another (LiteRT's first mode pays the fp32 "
             "conversion of all three graphs, later modes reuse it from the cache). UNet at batch 2 (CFG) on the golden "
             "input (middle step), all runners in one process; SQNR against torch fp32. `edge check`: UNet SQNR over "
             "the 19 steps of the held-out pair, masked PSNR of the whole inpaint against the fp32 pipeline.", "",
             "| bundle | compile s | peak RSS GB | size MB (enc/unet/dec) | partitions (enc/unet/dec) | UNet TRANSPOSE/RESHAPE | UNet b2 s | vs eager | UNet SQNR dB (golden) | check: UNet SQNR dB | check: masked PSNR dB |",  # noqa: E501
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    runtime, checks = result.get("runtime", {}), result.get("check", {})
    eager = runtime.get("torch eager fp32")
    if eager:
        lines.append(f"| torch eager fp32 | — | — | — | — | — | {eager['unet_s']} | 1.0x | — | — | — |")
    for key, entry in result["compile"].items():
        graphs = entry["graphs"]
        names = ("encoder", "unet", "decoder")
        sizes = "/".join(str(entry["size_mb"][n]) for n in names)
        partitions = "/".join(str(graphs[n]["partitions"]) for n in names)
        label = key.replace(":", " ")
        row, check = runtime.get(key), checks.get(key, {})
        timing = (f"{row['unet_s']} | {row['speedup_vs_eager']}x | {row['unet_sqnr_db']}" if row
                  else f"not run here | — | {graphs['unet']['golden_sqnr_db'] if key.startswith('tflite') else '—'}")
        proxy = " (torch proxy)" if key.startswith("vulkan") and check else ""
        lines.append(f"| {label} | {entry['seconds']} | {entry['peak_rss_gb']} | {sizes} | {partitions} | "
                     f"{'/'.join(map(str, graphs['unet']['transpose_reshape']))} | {timing} | "
                     f"{check.get('unet_sqnr_db', '—')}{proxy} | {check.get('masked_psnr_db', '—')}{proxy} |")
    histogram = result["compile"].get("tflite:fp32", {}).get("unet_op_histogram")
    if histogram:
        lines += ["", "LiteRT fp32 UNet op histogram: " + ", ".join(f"{op} {n}" for op, n in histogram.items())]
    write_section("LITERT_VULKAN", "LiteRT and Vulkan bundles (`litert_vulkan.py`)", lines)


if __name__ == "__main__":
    main()
