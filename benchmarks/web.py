"""Web bundles at full size (moebius-0.22b, random weights: sizes and speed, not quality) in one run.

Phase 1 compiles one bundle per quant mode, each `edge compile --target web` in its own process (seconds, peak
RSS), and sums what a browser downloads (the three graphs and the step graph). Phase 2 times onnxruntime in
Python (CPU provider, as `edge verify` and `edge inpaint --bundle` run web bundles) against torch eager on each
bundle's held-out golden inputs, with each graph's SQNR against torch fp32. Phase 3 serves each bundle with
`edge serve` and runs the page's whole inpaint in headless Chromium (Debian's, through playwright) on WASM with
2 threads: per-step seconds, total seconds, and whether it ran to the end (the browser's memory holding).
Writes benchmarks/results/web.json and the web table in benchmarks/README.md.

    .venv/bin/python benchmarks/web.py [--modes fp32 fp16 int8 int4] [--runs 3] [--reuse]   (--reuse: bundles in out/)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from readme_section import write_section
from timing import measure, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL = "moebius-0.22b"
CHROMIUM = "/usr/bin/chromium"
BROWSER_THREADS = 2
BROWSER_TIMEOUT_MS = 40 * 60 * 1000


def compile_mode(mode: str, out: Path, reuse: bool) -> dict:
    """Compiles unless reusing; wall time and peak RSS when compiled in this run, lowering seconds from the manifest."""
    measured = {"seconds": None, "peak_rss_gb": None}
    if not (reuse and (out / "manifest.json").is_file()):
        command = [str(REPO / ".venv" / "bin" / "edge"), "compile", "--target", "web", "--quant", mode, "--model",
                   MODEL, "-o", str(out), "--force", "--json"]
        _, seconds, peak_gb = run(command)
        measured = {"seconds": seconds, "peak_rss_gb": peak_gb}
    graphs = json.loads((out / "manifest.json").read_text())["graphs"]
    return {**measured, "lowering_s": round(sum(graph["report"]["seconds"] for graph in graphs.values()), 1)}


def download_mb(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = {name: entry["file"] for name, entry in manifest["graphs"].items()} | {"step": manifest["step_graph"]["file"]}
    sizes = {name: round((bundle / file).stat().st_size / 1e6, 1) for name, file in files.items()}
    return {**sizes, "total": round(sum(sizes.values()), 1)}


def time_in_python(bundles: dict[str, Path], runs: int) -> dict:
    from edge.bundle.bundle import open_bundle
    from edge.bundle.runner import BundleGraphs
    from edge.compile.graphs import build_graphs
    from edge.models import get_preset, load_unet, load_vae
    from edge.pipeline.loop import TorchGraphs
    from edge.quality.metrics import sqnr_db

    preset = get_preset(MODEL)
    # one runner in memory at a time: the four together (torch, then onnxruntime's fp32, fp16, int8) outgrow 24 GB
    runners = {"torch eager fp32": lambda: TorchGraphs(build_graphs(preset, load_unet(preset), load_vae(preset)))}
    runners |= {f"onnxruntime {mode}": lambda path=path: BundleGraphs(open_bundle(path)) for mode, path in bundles.items()}
    golden = open_bundle(next(iter(bundles.values())))  # hashes checked once: the held-out inputs of every graph
    cases = {name: golden.golden_case(name) for name in ("encoder", "unet", "decoder")}
    rows = {}
    for label, load in runners.items():
        print(f"timing {label} ...", file=sys.stderr, flush=True)
        graphs = load()
        calls = {"encoder": graphs.encode, "unet": graphs.denoise, "decoder": graphs.decode}
        row = {}
        for name, call in calls.items():
            inputs, _, reference = cases[name]
            row[f"{name}_s"] = measure(lambda call=call, inputs=inputs: call(*inputs), runs)["median_s"]
            with torch.no_grad():
                row[f"{name}_sqnr_db"] = round(sqnr_db(reference, call(*inputs)), 2)
        rows[label] = row
        del graphs
        gc.collect()
    eager = rows["torch eager fp32"]["unet_s"]
    for row in rows.values():
        row["unet_speedup"] = round(eager / row["unet_s"], 2)
    return rows


def time_in_browser(mode: str, bundle: Path) -> dict:
    """The page's whole inpaint (the manifest's 19 steps) on WASM, from a seeded photo, mask and noise."""
    from playwright.sync_api import Error as PageError
    from playwright.sync_api import sync_playwright

    from edge.serve import DemoServer

    manifest = json.loads((bundle / "manifest.json").read_text())
    size, side = manifest["image_size"], manifest["latent_size"]
    rng = np.random.default_rng(0)
    mask = np.zeros((size, size), np.float32)
    mask[size // 4: size // 2, size // 4: 3 * size // 4] = 1
    inputs = {"image": (rng.random(3 * size * size, dtype=np.float32) * 2 - 1).tolist(), "mask": mask.ravel().tolist(),
              "noise": rng.standard_normal(4 * side * side, dtype=np.float32).tolist(), "provider": "wasm"}
    print(f"browser {mode} ...", file=sys.stderr, flush=True)
    with DemoServer(bundle, port=0) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.goto(server.url)
            threads = page.evaluate("edgeDemo.ready.then(() => document.getElementById('runtime').textContent)")
            started = page.evaluate("performance.now()")
            try:
                result = page.evaluate("inputs => edgeDemo.inpaintTensors(inputs).then(r => ({stepMs: r.stepMs}))", inputs)
            except PageError as err:  # the page ran out of memory or hit an error: that is the measurement
                return {"completed": False, "error": str(err).splitlines()[0], "runtime": threads}
            seconds = (page.evaluate("performance.now()") - started) / 1000
        finally:
            browser.close()
    steps = sorted(result["stepMs"])
    return {"completed": True, "runtime": threads, "inpaint_s": round(seconds, 1),
            "step_s_median": round(steps[len(steps) // 2] / 1000, 2), "steps": len(steps)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", nargs="+", default=["fp32", "fp16", "int8", "int4"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="reuse bundles already in out/bench-web-*")
    parser.add_argument("--browser-again", nargs="+", default=[], metavar="MODE",
                        help="measure only these modes' browser rows again, into the last results (marked as such)")
    args = parser.parse_args()
    if args.browser_again:
        measure_browser_again(args.browser_again)
        return
    for noisy in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(BROWSER_THREADS)

    (REPO / "out").mkdir(exist_ok=True)
    bundles = {mode: REPO / "out" / f"bench-web-{mode}" for mode in args.modes}
    compiled = {}
    for mode, path in bundles.items():
        print(f"compiling {mode} ...", file=sys.stderr, flush=True)
        compiled[mode] = compile_mode(mode, path, args.reuse) | {"download_mb": download_mb(path)}
    load_before = os.getloadavg()
    python = time_in_python(bundles, args.runs)
    browser = {mode: time_in_browser(mode, path) for mode, path in bundles.items()}
    result = {"schema": 1, "benchmark": "web", "model": MODEL, "weights": "random seed 0",
              "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "threads": BROWSER_THREADS, "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "compile": compiled, "python": python,
              "browser": browser}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "web.json").write_text(json.dumps(result, indent=1) + "\n")
    write_table(result)
    print(json.dumps(result, indent=1))


def measure_browser_again(modes: list[str]) -> None:
    """A browser row measured again (after a fix to the page) goes into the last results with its own load average."""
    path = HERE / "results" / "web.json"
    result = json.loads(path.read_text())
    for mode in modes:
        before = os.getloadavg()
        row = time_in_browser(mode, REPO / "out" / f"bench-web-{mode}")
        row["measured_again"] = {"date": datetime.date.today().isoformat(),
                                 "load_average": [round(x, 2) for x in before]}
        result["browser"][mode] = row
    path.write_text(json.dumps(result, indent=1) + "\n")
    write_table(result)
    print(json.dumps(result["browser"], indent=1))


def write_table(result: dict) -> None:
    lines = [f"Measured {result['date']}, {result['threads']} threads, {result['model']} ({result['weights']}: sizes "
             f"and speed, not quality), 512x512, load average {result['load_average_before'][0]} before and "
             f"{result['load_average_after'][0]} after; all rows in one run. SQNR against torch fp32 on the bundle's "
             "held-out golden input; UNet at batch 2 (CFG).", "",
             "| runner | UNet b2 s | vs eager | UNet SQNR dB | encoder s | enc SQNR | decoder s | dec SQNR |",
             "|---|---|---|---|---|---|---|---|"]
    for label, row in result["python"].items():
        lines.append(f"| {label} | {row['unet_s']} | {row['unet_speedup']}x | {row['unet_sqnr_db']} | "
                     f"{row['encoder_s']} | {row['encoder_sqnr_db']} | {row['decoder_s']} | {row['decoder_sqnr_db']} |")
    lines += ["", "| mode | download MB (enc + unet + dec + step) | lowering s (3 graphs) | compile s | peak RSS GB | "
              f"Chromium WASM ({result['threads']} threads): s per step | whole inpaint s |",
              "|---|---|---|---|---|---|---|"]
    for mode, entry in result["compile"].items():
        size = entry["download_mb"]
        browser = result["browser"][mode]
        timing = (f"{browser['step_s_median']} | {browser['inpaint_s']}" if browser["completed"]
                  else f"did not finish: {browser['error']} | -")
        if "measured_again" in browser:
            timing += f" (measured again, load average {browser['measured_again']['load_average'][0]})"
        lines.append(f"| {mode} | {size['total']} ({size['encoder']} + {size['unet']} + {size['decoder']} + "
                     f"{size['step']}) | {entry['lowering_s']} | {entry['seconds'] or 'reused'} | "
                     f"{entry['peak_rss_gb'] or '-'} | {timing} |")
    write_section("WEB", "Web bundles (`web.py`)", lines)


if __name__ == "__main__":
    main()
