"""Peak memory of the native runner (android_demo/runner) for full-size XNNPACK bundles, in one run.

For each bundle (those `xnnpack.py` compiled): each program alone in its own runner process (what an
app that loads, runs and releases one program at a time needs), then all three held in one process as
an app holds them, once with one XNNPACK activation workspace shared by the programs and once with one
each. Every call runs on the bundle's golden inputs with its output checked against the golden output.
The peak of an inpaint is reached in its first pass through the three programs, so one warm-up and one
timed call per program give it. Writes benchmarks/results/runner_memory.json and its table in
benchmarks/README.md.

    .venv/bin/python benchmarks/runner_memory.py [--bundles out/bench-int8 ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path

from baseline import cpu_name
from readme_section import write_section

from edge.bundle.bundle import open_bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.device.measure import Settings
from edge.device.native import (
    RunnerProgram,
    build_runner,
    max_abs_vs_golden,
    memory_summary,
    parse_held_line,
    parse_runner_line,
    run_runner,
    runner_arguments,
    write_inputs,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUNDLES = [REPO / "out" / f"bench-{mode}" for mode in ("fp32", "int8", "int8-dynamic")]


def run_programs(binary: Path, programs: list[RunnerProgram], settings: Settings, workspace: str, what: str) -> str:
    return run_runner([str(binary), *runner_arguments(programs, settings, workspace=workspace)], what, 1200.0)


def measure_bundle(binary: Path, path: Path, settings: Settings) -> dict:
    bundle = open_bundle(path)
    with tempfile.TemporaryDirectory(prefix="edge-memory-") as tmp:
        folder = Path(tmp)
        programs = {name: RunnerProgram(str(bundle.graph_file(name)),
                                        [(str(p), shape) for p, shape in write_inputs(bundle, name, folder)],
                                        str(folder / f"{name}.output.f32")) for name in GRAPH_NAMES}

        def worst_error(names) -> float:
            return max(max_abs_vs_golden(bundle, name, Path(programs[name].output)) for name in names)

        alone, errors = {}, {}
        for name in GRAPH_NAMES:
            print(f"{path.name}: {name} alone", flush=True)
            alone[name] = parse_runner_line(run_programs(binary, [programs[name]], settings, "shared", name), name)
            errors[f"{name} alone"] = worst_error([name])
        held = {}
        for workspace in ("shared", "separate"):
            print(f"{path.name}: all held, {workspace} workspace", flush=True)
            stdout = run_programs(binary, list(programs.values()), settings, workspace, f"held ({workspace})")
            held[workspace] = parse_held_line(stdout, f"held ({workspace})", GRAPH_NAMES)
            errors[f"held {workspace}"] = worst_error(GRAPH_NAMES)
    return {"quant": bundle.manifest.quant, "alone": alone, "held": held,
            "memory": {workspace: memory_summary(bundle, record, alone) for workspace, record in held.items()},
            "max_abs_vs_golden": errors}


def table(result: dict) -> list[str]:
    lines = [f"Measured {result['date']} on {result['machine']}, {result['threads']} threads, load average "
             f"{result['load_average_before']} before and {result['load_average_after']} after; moebius-0.22b "
             "(random weights: memory does not depend on them), 512x512, the bundles `xnnpack.py` compiled; "
             "`edge_runner` built against the executorch wheel, programs memory-mapped. Peak RSS is the process's "
             "VmHWM. Each program's output matched the golden output in every configuration "
             f"(worst max abs {result['worst_max_abs_vs_golden']:.1e}).", "",
             "| mode | programs MB | encoder alone MB | UNet alone | decoder alone | one at a time (largest) | "
             "all held: loaded, before any call | all held: peak, shared workspace | all held: peak, one workspace each |",
             "|---|---|---|---|---|---|---|---|---|"]
    for record in result["bundles"].values():
        shared, separate = record["memory"]["shared"], record["memory"]["separate"]
        alone = record["alone"]
        lines.append(f"| {record['quant']} | {shared['programs_mb']} | "
                     + " | ".join(f"{alone[name]['peak_rss_mb']:.0f}" for name in GRAPH_NAMES)
                     + f" | {shared['one_at_a_time_peak_rss_mb']:.0f} ({shared['one_at_a_time_vs_programs']}x) | "
                     f"{shared['loaded_rss_mb']:.0f} | {shared['held_peak_rss_mb']:.0f} ({shared['held_vs_programs']}x) | "
                     f"{separate['held_peak_rss_mb']:.0f} ({separate['held_vs_programs']}x) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=Path, nargs="+", default=BUNDLES)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    binary = build_runner(say=print)
    load_before = [round(x, 2) for x in os.getloadavg()]
    settings = Settings(runs=1, warmup=1, threads=args.threads, cooldown_s=0)
    bundles = {path.name: measure_bundle(binary, path, settings) for path in args.bundles}
    result = {"date": datetime.date.today().isoformat(), "machine": cpu_name(), "threads": args.threads,
              "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "bundles": bundles,
              "worst_max_abs_vs_golden": max(e for b in bundles.values() for e in b["max_abs_vs_golden"].values())}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "runner_memory.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = table(result)
    write_section("RUNNER_MEMORY", "Native runner memory (`runner_memory.py`)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
