"""Core ML bundles at full size (moebius-0.22b, random weights): conversion, size and quality per quant mode.

1. `edge compile --target coreml --quant MODE` for every mode, each in its own process: wall time and peak
   RSS of the process, per graph the conversion seconds, package MB and the op histogram; the golden SQNR of
   each graph against torch fp32 (run in edge's MIL interpreter at compile time);
2. end to end, in the interpreter: the full 19-step inpaint of the held-out pair (edge check's pipeline
   comparison: same start noise) against the fp32 torch pipeline: PSNR and SSIM inside the mask. (`edge check`
   also compares every UNet step in isolation; through the interpreter at full size, ~20 s per fp16 UNet call on
   this CPU, that doubles an already long run, so this script does the end-to-end half.)
3. the UNet's op histogram before our rewrites (coremltools' own GroupNorm decomposition) and after.
Results are written after every step (benchmarks/results/coreml.json, the CORE ML tables in
benchmarks/README.md); --reuse continues from them.

    .venv/bin/python benchmarks/coreml.py [--modes fp16 int8 ...] [--reuse] [--no-end-to-end]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
from pathlib import Path

from baseline import cpu_name
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
    from edge.backends.coreml.backend import BACKEND
    from edge.compile.graphs import build_graphs, prepare_graph
    from edge.compile.prepare import load_models

    models = load_models("moebius-0.22b", None, None, 0)
    spec = build_graphs(models.preset, models.unet, models.vae)["unet"]
    lowered = BACKEND.lower(prepare_graph(spec, (), spec.example_inputs()), "fp16", [])
    report = lowered.report
    return {**report["ops"], "rank5_tensors": report["rank5_tensors"]}


def end_to_end(bundle_path: Path) -> dict:
    """The held-out pair inpainted by the bundle (in the interpreter) and by the fp32 torch pipeline, same noise."""
    from edge.bundle.bundle import open_bundle
    from edge.bundle.runner import BundleGraphs
    from edge.compile.graphs import build_graphs
    from edge.compile.prepare import load_models
    from edge.pipeline.loop import TorchGraphs, inpaint_image
    from edge.quality.check import evaluation_pairs, picture_metrics

    bundle = open_bundle(bundle_path)
    models = load_models("moebius-0.22b", None, None, 0)
    pair = evaluation_pairs(None, bundle)[0][0]
    picture, mask = pair.pictures()
    started = time.perf_counter()
    results = [inpaint_image(graphs, bundle.sampling_plan(), bundle.manifest.image_size, picture, mask, seed=0)
               for graphs in (TorchGraphs(build_graphs(models.preset, models.unet, models.vae)), BundleGraphs(bundle))]
    measured = picture_metrics(picture, mask, *results, None)
    metrics = {k: round(v, 4) for k, v in measured.items() if k in ("masked_psnr_db", "masked_ssim", "psnr_db")}
    return {"pair": pair.name, **metrics, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--reuse", action="store_true", help="continue from the bundles and results already there")
    parser.add_argument("--no-end-to-end", action="store_true", help="conversion numbers only")
    args = parser.parse_args()
    logging.getLogger("torchao").setLevel(logging.ERROR)
    out = REPO / "out"
    results_path = HERE / "results" / "coreml.json"
    result = json.loads(results_path.read_text()) if args.reuse and results_path.is_file() else {}
    result.update({"schema": 1, "benchmark": "coreml", "model": "moebius-0.22b", "weights": "random seed 0",
                   "date": datetime.date.today().isoformat(), "machine": f"{cpu_name()} ({os.cpu_count()} cores)",
                   "load_average_before": [round(x, 2) for x in os.getloadavg()]})
    compiled, quality = result.setdefault("compile", {}), result.setdefault("end_to_end", {})

    def save() -> None:
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        results_path.parent.mkdir(exist_ok=True)
        results_path.write_text(json.dumps(result, indent=1) + "\n")
        write_tables(result)

    if "unet_ops_without_rewrites" not in result:
        result["unet_ops_without_rewrites"] = histogram_without_rewrites()
    for mode in args.modes:
        bundle = out / f"bench-coreml-{mode}"
        if not (args.reuse and mode in compiled and (bundle / "manifest.json").is_file()):
            print(f"edge compile coreml {mode} ...", file=sys.stderr, flush=True)
            summary, seconds, rss = run([EDGE, "compile", "--target", "coreml", "--quant", mode, "--model", "moebius-0.22b",
                                         "-o", str(bundle), "--force", "--json"])
            compiled[mode] = {"seconds": seconds, "peak_rss_gb": rss, "graphs": summary["graphs"]}
            save()
    for mode in [] if args.no_end_to_end else args.modes:
        if not (args.reuse and mode in quality):
            print(f"end to end {mode} ...", file=sys.stderr, flush=True)
            quality[mode] = end_to_end(out / f"bench-coreml-{mode}")
            save()
    save()


def _mb(graph: dict) -> str:
    return f"{graph['bytes'] / 1e6:.1f}"


def write_tables(result: dict) -> None:
    lines = [f"Measured {result['date']} on {result['machine']}, load average {result['load_average_before']} before "
             f"and {result['load_average_after']} after; {result['model']} ({result['weights']}), 512x512, iOS 17 "
             "target. Conversion: one `edge compile` process per mode, in the order of the table (calibration recordings "
             "cached; later modes reuse the fp16 conversion from the cache, as a user's compiles would); per-graph "
             "seconds from the compile report. SQNR: each graph on its held-out golden input (the UNet at the middle step) vs "
             "torch fp32, run in edge's MIL interpreter (fp16 rounding emulated per op); end to end: the full 19-step "
             "inpaint of the held-out pair through the interpreter vs the fp32 torch pipeline, same start noise.", "",
             "| mode | compile s | peak RSS GB | enc / UNet / dec convert s | enc / UNet / dec MB | enc / UNet / dec SQNR dB "
             "| masked PSNR dB | masked SSIM |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, entry in result["compile"].items():
        graphs = entry["graphs"]
        names = ("encoder", "unet", "decoder")
        quality = result["end_to_end"].get(mode)
        quality = f"{quality['masked_psnr_db']:.1f} | {quality['masked_ssim']:.4f}" if quality else "— | —"
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
