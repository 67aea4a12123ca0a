"""`edge check` on Ray against the serial run, in one run: a 16-pair evaluation of the tiny int8 XNNPACK bundle.

Runs, in this process and on the same bundle and pairs:
  serial, 1 thread    what each Ray task does, one pair after the other
  serial, all threads the best a single process does here
  Ray, 2 workers      an embedded Ray (one thread per task): session start, the workers' set-up, the pairs
and checks that Ray's numbers are the 1-thread serial run's. From those: the speed-up, Ray's fixed cost (session
and workers) and its cost per task. Then, on paper, a 10,000-pair evaluation at full size (moebius-0.22b,
XNNPACK int8), from the per-pair time measured by benchmarks/xnnpack.py on this machine.
Writes benchmarks/results/cluster.json and the cluster table in benchmarks/README.md.

    .venv/bin/python benchmarks/cluster.py [--bundle DIR]   (default: compiles out/cluster-int8 once)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from readme_section import write_section

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHOTOS = [("eval_data", name) for name in ("flower", "monarch", "pexels-2416933", "pexels-6615808", "tulips")] + [
    ("calib_data", name) for name in ("astronaut", "chelsea", "coffee", "rocket")]
PAIRS = 16
FULL_SIZE_PAIRS = 10_000
MACHINES = (1, 10, 100)


def sixteen_pairs(folder: Path) -> Path:
    """The nine photographs with their masks, then seven of them again under new names with seeded masks."""
    for part in ("images", "masks"):
        (folder / part).mkdir(parents=True)
    for k in range(PAIRS):
        source, name = PHOTOS[k % len(PHOTOS)]
        image = next((REPO / source / "images").glob(f"{name}.*"))
        stem = name if k < len(PHOTOS) else f"{name}-again"
        shutil.copy(image, folder / "images" / f"{stem}{image.suffix}")
        if k < len(PHOTOS):
            shutil.copy(REPO / source / "masks" / f"{name}.png", folder / "masks" / f"{stem}.png")
    return folder


def tiny_bundle(out: Path) -> Path:
    if not (out / "manifest.json").is_file():
        subprocess.run([str(REPO / ".venv" / "bin" / "edge"), "compile", "--target", "xnnpack", "--quant", "int8",
                        "--model", "moebius-tiny-trained", "-o", str(out), "--force", "--json"],
                       check=True, stdout=subprocess.DEVNULL)
    return out


def numbers(result) -> list:
    return [result.graphs, result.unet_steps, [p.metrics for p in result.pairs]]


def serial(request, threads: int) -> tuple[float, object]:
    from edge.quality.check import plan_check, run_check

    torch.set_num_threads(threads)
    started = time.perf_counter()
    result = run_check(plan_check(request))
    return time.perf_counter() - started, result


def on_ray(request) -> dict:
    """Wall time of the session's start, of the first pair's result (the workers' set-up plus one pair), and of all."""
    from edge.cluster.check import run_check_on_ray
    from edge.cluster.session import LOCAL, ray_session
    from edge.quality.check import plan_check

    check = plan_check(request)
    marks = {"started": time.perf_counter()}

    def on_pair(done: int, total: int) -> None:
        marks.setdefault("first_pair", time.perf_counter())

    with ray_session(LOCAL, threads=1) as session:
        marks["session"] = time.perf_counter()
        workers = session.slots
        result = run_check_on_ray(request, check, session, on_pair)
        marks["done"] = time.perf_counter()
    return {"workers": workers, "session_s": marks["session"] - marks["started"],
            "first_pair_s": marks["first_pair"] - marks["session"], "total_s": marks["done"] - marks["started"],
            "result": result}


def full_size_per_pair() -> dict:
    """One pair of a full-size check, from benchmarks/xnnpack.py's timings: the fp32 pipeline, the bundle's, and
    each bundle graph alone on the recorded inputs (2 encoder calls, 19 UNet calls, 1 decoder call)."""
    runtime = json.loads((HERE / "results" / "xnnpack.json").read_text())["runtime"]
    fp32, int8 = runtime["torch eager fp32"], runtime["xnnpack int8"]
    graphs = 2 * int8["encoder_s"] + 19 * int8["unet_s"] + int8["decoder_s"]
    seconds = fp32["inpaint_s"] + int8["inpaint_s"] + graphs
    return {"fp32_pipeline_s": fp32["inpaint_s"], "bundle_pipeline_s": int8["inpaint_s"], "graphs_alone_s": round(graphs, 1),
            "per_pair_s": round(seconds, 1),
            "hours": {str(n): round(FULL_SIZE_PAIRS * seconds / n / 3600, 1) for n in MACHINES}}


def table(result: dict) -> list[str]:
    ray, serial1, serial_all = result["ray"], result["serial_1_thread_s"], result["serial_all_threads_s"]
    paper = result["full_size"]
    lines = [f"Measured {result['date']} on {result['machine']} ({result['cores']} cores), load average "
             f"{result['load_average_before']} before and {result['load_average_after']} after; moebius-tiny-trained "
             f"XNNPACK int8, {PAIRS} pairs (`cluster.py`). Ray's numbers equal the 1-thread serial run's: "
             f"**{result['identical']}**.", "",
             "| run | wall s | per pair s | speed-up vs serial 1 thread | vs serial all threads |", "|---|---|---|---|---|",
             f"| serial, 1 thread | {serial1:.1f} | {serial1 / PAIRS:.2f} | 1.00x | {serial_all / serial1:.2f}x |",
             f"| serial, {result['cores']} threads | {serial_all:.1f} | {serial_all / PAIRS:.2f} | "
             f"{serial1 / serial_all:.2f}x | 1.00x |",
             f"| Ray, {ray['workers']} workers x 1 thread | {ray['total_s']:.1f} | {ray['total_s'] / PAIRS:.2f} | "
             f"{serial1 / ray['total_s']:.2f}x | {serial_all / ray['total_s']:.2f}x |", "",
             f"Ray's fixed cost: {ray['session_s']:.1f} s to start the embedded session, {ray['fixed_s']:.1f} s in all "
             f"before the first pair's result beyond that pair's own time (the workers import torch and ExecuTorch and "
             f"load both models). After it, each task costs {ray['per_task_overhead_s']:+.2f} s against the serial "
             f"per-pair time (nothing measurable), so the {ray['workers']} workers measure pairs "
             f"{serial1 / (ray['total_s'] - ray['fixed_s']):.2f}x as fast as the 1-thread serial run: the speed-up "
             "tends to the number of workers as the evaluation grows, while the fixed cost stays put.",
             "",
             f"On paper, {FULL_SIZE_PAIRS:,} pairs at full size (moebius-0.22b, XNNPACK int8, 2-core machines like this "
             f"one): a pair costs {paper['per_pair_s']} s (fp32 pipeline {paper['fp32_pipeline_s']} s + the bundle's "
             f"{paper['bundle_pipeline_s']} s + its graphs alone on the recorded inputs {paper['graphs_alone_s']} s, "
             "from `xnnpack.py`), so "
             + ", ".join(f"{n} machine{'' if n == '1' else 's'}: {hours} h" for n, hours in paper["hours"].items())
             + " (pairs spread evenly; the fixed cost above is seconds to a minute at full size, noise at this scale)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, help="a tiny XNNPACK bundle (default: out/cluster-int8, compiled once)")
    args = parser.parse_args()
    from edge.console import quiet_libraries
    from edge.quality.check import CheckRequest

    quiet_libraries()
    bundle = args.bundle or tiny_bundle(REPO / "out" / "cluster-int8")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        request = CheckRequest(bundle, sixteen_pairs(Path(folder) / "pairs"))
        serial_1_s, expected = serial(request, 1)
        serial_all_s, _ = serial(request, os.cpu_count() or 1)
        ray = on_ray(request)
    per_pair = serial_1_s / PAIRS
    ray_result = ray.pop("result")
    ray["fixed_s"] = ray["session_s"] + ray["first_pair_s"] - per_pair
    ray["per_task_overhead_s"] = (ray["total_s"] - ray["fixed_s"]) * ray["workers"] / PAIRS - per_pair
    result = {"schema": 1, "benchmark": "cluster", "date": datetime.date.today().isoformat(),
              "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "pairs": PAIRS,
              "serial_1_thread_s": round(serial_1_s, 2), "serial_all_threads_s": round(serial_all_s, 2),
              "ray": {k: round(v, 2) if isinstance(v, float) else v for k, v in ray.items()},
              "identical": numbers(ray_result) == numbers(expected), "full_size": full_size_per_pair()}
    (HERE / "results" / "cluster.json").write_text(json.dumps(result, indent=1) + "\n")
    write_section("CLUSTER", "Evaluation on Ray (`cluster.py`)", table(result))
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
