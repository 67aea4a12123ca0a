"""`edge profile --device local` on the full-size XNNPACK bundles, in one run: Python runtime and native runner.

Each bundle is profiled in its own `edge profile --json` process (so peak RSS is the bundle's own),
with the native runner built first (`edge runner build`). The profiles are saved under
benchmarks/results/profiles/ (the bundles are not written to), the summary in
benchmarks/results/profile.json and the PROFILE table (with the int8 UNet's top ops) in
benchmarks/README.md.

    .venv/bin/python benchmarks/host_profile.py [--bundles out/bench-fp32 out/bench-int8 ...] [--runs 5]

Named host_profile, not profile: the script's folder comes first on sys.path, and a `profile.py` there
shadows the standard library's, which cProfile (imported by torch._dynamo) needs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from readme_section import write_section

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EDGE = [sys.executable, "-c", "import sys; from edge.cli import main; sys.argv[0] = 'edge'; main()"]
DEFAULT_BUNDLES = [REPO / "out" / f"bench-{mode}" for mode in ("fp32", "int8", "int8-dynamic")]


def edge(*arguments: str) -> dict:
    done = subprocess.run([*EDGE, *arguments, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"edge {' '.join(arguments)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def latest_profile(folder: Path, bundle: Path) -> Path | None:
    """The newest complete local profile of this bundle saved in folder, if any."""
    matching = [path for path in sorted(folder.glob("*-local*.json"))
                if json.loads(path.read_text())["bundle"] == str(bundle)]
    return matching[-1] if matching else None


def seconds(ms: float) -> str:
    return f"{ms / 1000:.3f}"


def table(profiles: list[dict]) -> list[str]:
    lines = ["| bundle | graph | Python median s | p90 s | min..max s | CV | trimmed mean s | native median s | "
             "native / Python | load s | first call s | peak RSS MB (Python) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for profile in profiles:
        for name, graph in profile["graphs"].items():
            native = profile["native"]["graphs"][name]
            lines.append(f"| {profile['quant']} | {name} | {seconds(graph['median_ms'])} | {seconds(graph['p90_ms'])} | "
                         f"{seconds(graph['min_ms'])}..{seconds(graph['max_ms'])} | {graph['cv']:.1%} | "
                         f"{seconds(graph['trimmed_mean_ms'])} | {seconds(native['median_ms'])} | "
                         f"{profile['native_vs_python'][name]} | {seconds(graph['load_ms'])} | "
                         f"{seconds(graph['first_run_ms'])} | {graph['peak_rss_mb']:.0f} |")
        inpaint = profile["inpaint"]
        shares = ", ".join(f"{n} {seconds(ms)}" for n, ms in inpaint["graph_ms"].items())
        lines.append(f"| {profile['quant']} | **full inpaint** ({inpaint['steps']} steps, {inpaint['runs']} runs) | "
                     f"**{seconds(inpaint['median_ms'])}** | | {seconds(inpaint['min_ms'])}..{seconds(inpaint['max_ms'])} "
                     f"| {inpaint['cv']:.1%} | | | | | {shares} | {inpaint['peak_rss_mb']:.0f} |")
    return lines


def memory_table(profiles: list[dict]) -> list[str]:
    lines = ["Native runner memory (every program held in one runner, shared XNNPACK workspace, against the largest "
             "single program alone; peak RSS is VmHWM):", "",
             "| bundle | programs MB | all loaded MB | held peak MB | held / programs | one at a time MB | one at a time / programs |",
             "|---|---|---|---|---|---|---|"]
    for profile in profiles:
        memory = profile["native"]["memory"]
        lines.append(f"| {profile['quant']} | {memory['programs_mb']} | {memory['loaded_rss_mb']:.0f} | "
                     f"{memory['held_peak_rss_mb']:.0f} | {memory['held_vs_programs']}x | "
                     f"{memory['one_at_a_time_peak_rss_mb']:.0f} | {memory['one_at_a_time_vs_programs']}x |")
    return lines


def op_table(profile: dict, graph: str) -> list[str]:
    ops = profile["ops"][graph]
    lines = [f"Top ops of the {profile['quant']} {graph} (ETDump of {ops['runs']} runs, Python runtime; "
             f"ops add up to {seconds(ops['ops_ms'])} s of the {seconds(ops['execute_ms'])} s execute):", "",
             "| op | in XNNPACK | calls / run | s / run | share |", "|---|---|---|---|---|"]
    for op in ops["top"]:
        lines.append(f"| {op['op']} | {'yes' if op['delegated'] else 'no'} | {op['calls_per_run']} | "
                     f"{seconds(op['ms_per_run'])} | {op['share']:.1%} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", nargs="+", type=Path, default=DEFAULT_BUNDLES)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inpaint-runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="take a bundle's latest saved profile instead of rerunning")
    args = parser.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    runner = edge("runner", "build")["runner"]
    save_dir = HERE / "results" / "profiles"
    profiles = []
    for bundle in args.bundles:
        saved = latest_profile(save_dir, bundle) if args.reuse else None
        print(f"{'reusing ' + str(saved) if saved else 'profiling'} {bundle}", flush=True)
        profiles.append(json.loads(saved.read_text()) if saved else
                        edge("profile", str(bundle), "--runs", str(args.runs), "--warmup", str(args.warmup),
                             "--inpaint-runs", str(args.inpaint_runs), "--threads", str(args.threads),
                             "--native", "--save-dir", str(save_dir)))
    date = datetime.date.today().isoformat()
    load_after = [round(x, 2) for x in os.getloadavg()]
    summary = {"date": date, "load_average_before": load_before, "load_average_after": load_after, "runner": runner,
               "settings": vars(args) | {"bundles": [str(b) for b in args.bundles]}, "profiles": profiles}
    (HERE / "results" / "profile.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")

    device, side = profiles[0]["device"], profiles[0]["graphs"]["encoder"]["input_shapes"][0][-1]
    lines = [f"Measured {date} on {device['cpu']} ({device['cores']} cores), load average {load_before} before and "
             f"{load_after} after, {args.threads} threads, {profiles[0]['model']} (random weights) at {side}px; "
             f"golden inputs of each bundle. "
             f"Per graph: {args.warmup} warm-up + {args.runs} timed runs in the Python runtime (executorch.runtime), "
             f"then the same in the native runner (`android_demo/runner`, built against the executorch wheel) in "
             f"the same run; load = program load + method init (XNNPACK packs weights there), first call timed "
             f"apart. Full inpaint: 2 encodes, 19 CFG UNet calls, 1 decode, Python runtime.", "",
             *table(profiles), "", *memory_table(profiles), ""]
    int8 = next((p for p in profiles if p["quant"] == "int8"), None)
    if int8 is not None and "ops" in int8:
        lines += op_table(int8, "unet")
    write_section("PROFILE", "Host profile (`host_profile.py`)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
