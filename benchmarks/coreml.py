"""Core ML bundles at full size (moebius-0.22b, random weights): conversion, size and quality per quant mode.

1. `edge compile --target coreml --quant MODE` for every mode, each in its own process: wall time and peak
   RSS of the process, per graph the conversion seconds, package MB and the op histogram; the golden SQNR of
   each graph against torch fp32 (run in edge's MIL interpreter at compile time);
2. `edge check --json` on every bundle (held-out split of calib_data, through the interpreter): UNet SQNR over
   all 19 steps, worst step, masked PSNR of the full inpaint against the fp32 pipeline;
3. the UNet's op histogram before our rewrites (coremltools' own GroupNorm decomposition) and after.
Writes benchmarks/results/coreml.json and the CORE ML tables in benchmarks/README.md.

    .venv/bin/python benchmarks/coreml.py [--modes fp16 int8 ...] [--reuse] [--no-check]
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
MODES = ("fp32", "fp16", "int8", "palette6", "palette4", "w8a8")
HISTOGRAM_OPS = ("reshape", "transpose", "gather", "gather_nd", "conv", "matmul", "linear", "layer_norm", "reduce_mean",
                 "cast", "constexpr_affine_dequantize", "constexpr_lut_to_dense", "quantize", "dequantize")
# the probe of the published layout converted by coremltools (full model, random weights)
PUBLISHED_LAYOUT_PROBE = {"reshape": 617, "transpose": 390, "gather_nd": 15, "rank5_tensors": "15 Conv3d + GroupNorm"}


def histogram_without_rewrites() -> dict:
    """The fp16 UNet converted without the target's rewrites: what coremltools does with plain GroupNorm."""
    from edge.backends.coreml import BACKEND
    from edge.compile import load_models, prepare_graph
    from edge.graphs import build_graphs

    models = load_models("moebius-0.22b", None, None, 0)
    spec = build_graphs(models.preset, models.unet, models.vae)["unet"]
    lowered = BACKEND.lower(prepare_graph(spec, (), spec.example_inputs()), "fp16", [])
    report = lowered.report
    return {**report["ops"], "rank5_tensors": report["rank5_tensors"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--reuse", action="store_true", help="reuse bundles and results already there")
    parser.add_argument("--no-check", action="store_true", help="skip edge check (conversion numbers only)")
    args = parser.parse_args()
    out = REPO / "out"
    (out / "quality").mkdir(parents=True, exist_ok=True)
    previous_path = HERE / "results" / "coreml.json"
    previous = json.loads(previous_path.read_text()) if args.reuse and previous_path.is_file() else {}
    compiled, checks = dict(previous.get("compile", {})), dict(previous.get("check", {}))
    for mode in args.modes:
        bundle = out / f"bench-coreml-{mode}"
        if not (args.reuse and mode in compiled and (bundle / "manifest.json").is_file()):
            print(f"edge compile coreml {mode} ...", file=sys.stderr, flush=True)
            summary, seconds, rss = run([EDGE, "compile", "--target", "coreml", "--quant", mode, "--model", "moebius-0.22b",
                                         "-o", str(bundle), "--force", "--json"])
            compiled[mode] = {"seconds": seconds, "peak_rss_gb": rss, "graphs": summary["graphs"]}
        if not args.no_check and not (args.reuse and mode in checks):
            print(f"edge check {mode} ...", file=sys.stderr, flush=True)
            result, seconds, rss = run([EDGE, "check", str(bundle), "--report", str(out / "quality" / f"coreml-{mode}.html"),
                                        "--json"], allowed=(0, 1))
            checks[mode] = {"passed": result["passed"], "metrics": result["metrics"], "seconds": seconds, "peak_rss_gb": rss}
    before = previous.get("unet_ops_without_rewrites") or histogram_without_rewrites()
    result = {"schema": 1, "benchmark": "coreml", "model": "moebius-0.22b", "weights": "random seed 0",
              "date": datetime.date.today().isoformat(), "machine": "2-core x86_64 Linux, 24 GB, no GPU",
              "compile": compiled, "check": checks, "unet_ops_without_rewrites": before}
    (HERE / "results").mkdir(exist_ok=True)
    previous_path.write_text(json.dumps(result, indent=1) + "\n")
    write_tables(result)
    print(json.dumps({mode: {"seconds": c["seconds"], "peak_rss_gb": c["peak_rss_gb"]} for mode, c in compiled.items()}))


def _mb(graph: dict) -> str:
    return f"{graph['bytes'] / 1e6:.1f}"


def write_tables(result: dict) -> None:
    lines = [f"Measured {result['date']} on {result['machine']}; {result['model']} ({result['weights']}), 512x512, "
             "iOS 17 target. Conversion: one `edge compile` process per mode (calibration recordings cached); per-graph "
             "seconds from the compile report. SQNR: golden input vs torch fp32, run in edge's MIL interpreter "
             "(fp16 rounding emulated per op); check: `edge check` over the held-out pair (UNet over all 19 steps).", "",
             "| mode | compile s | peak RSS GB | enc / UNet / dec convert s | enc / UNet / dec MB | enc / UNet / dec golden SQNR dB "
             "| UNet SQNR dB (19 steps) | worst step dB | masked PSNR dB | gates |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, entry in result["compile"].items():
        graphs = entry["graphs"]
        names = ("encoder", "unet", "decoder")
        check = result["check"].get(mode)
        metrics = check["metrics"] if check else {}
        quality = (f"{metrics.get('unet_sqnr_db')} | {metrics.get('unet_worst_step_sqnr_db')} | {metrics.get('masked_psnr_db')} | "
                   f"{'pass' if check['passed'] else 'FAIL'}") if check else "— | — | — | —"
        lines.append(f"| {mode} | {entry['seconds']} | {entry['peak_rss_gb']} | "
                     f"{' / '.join(str(graphs[n]['seconds']) for n in names)} | {' / '.join(_mb(graphs[n]) for n in names)} | "
                     f"{' / '.join(str(graphs[n]['golden_sqnr_db']) for n in names)} | {quality} |")
    lines += ["", "UNet op histogram (fp16 program; `—` = absent). Ops the Neural Engine does not run "
              "(gather*, einsum, scatter*, ...; `NOT_ON_NEURAL_ENGINE` in edge/backends/coreml.py) are flagged per graph in "
              "the manifest's report; none remain.", "",
              "| op | published layout (issue probe) | ours, no rewrite | ours + `decompose-group-norms` (shipped) |",
              "|---|---|---|---|"]
    before, after = result["unet_ops_without_rewrites"], result["compile"].get("fp16", {}).get("graphs", {}).get("unet", {})
    after_ops = dict(after.get("ops", {}), rank5_tensors=after.get("rank5_tensors"))
    for op in ("rank5_tensors", *HISTOGRAM_OPS):
        lines.append(f"| {op} | {PUBLISHED_LAYOUT_PROBE.get(op, '—')} | {before.get(op, '—')} | {after_ops.get(op, '—')} |")
    write_section("COREML", "Core ML bundles (`coreml.py`)", lines)


if __name__ == "__main__":
    main()
