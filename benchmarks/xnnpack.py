"""XNNPACK bundles at full size (moebius-0.22b, random weights) against torch eager, in one run.

Phase 1 compiles one bundle per quant mode, each in its own `edge compile` process, recording wall
time and peak RSS; each lowers every graph afresh (a cache of its own, sharing only the calibration
recordings: edge's cached lowerings would answer a rerun at once). Phase 2 loads everything in this
process and measures, on the same held-out recorded inputs: the UNet at batch 2 (median of --runs
after a warm-up), the VAE encoder and decoder, the full 19-step inpaint, SQNR of every graph against
torch fp32, and the end-to-end PSNR inside the mask of each bundle against the fp32 pipeline with the
same start noise; then the int8 UNet's top ops (ETDump), so that the run says where its time goes.
Writes benchmarks/results/xnnpack.json and the XNNPACK table in benchmarks/README.md.

    .venv/bin/python benchmarks/xnnpack.py [--runs 3] [--modes fp32 int8 int8-dynamic] [--reuse]
    .venv/bin/python benchmarks/xnnpack.py --modes int8 int4 --profile int4 --label int4   # a table of its own
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from baseline import cpu_name
from host_profile import op_table
from readme_section import write_section
from timing import measure

from edge.cache import cache_dir

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def lowering_cache(folder: Path) -> Path:
    """`folder` (empty) as an EDGE_CACHE with no lowerings in it: it links the user's calibration recordings."""
    recordings = cache_dir() / "calibration"
    recordings.mkdir(parents=True, exist_ok=True)
    (folder / "calibration").symlink_to(recordings)
    return folder


def compile_mode(mode: str, out: Path, reused: Path | None) -> dict:
    """edge compile in its own process, every graph lowered afresh; with `reused` (an earlier run's results) an
    existing bundle is kept."""
    if reused and (out / "manifest.json").is_file():
        return json.loads(reused.read_text())["compile"][mode]
    command = [str(REPO / ".venv" / "bin" / "edge"), "compile", "--target", "xnnpack", "--quant", mode,
               "--model", "moebius-0.22b", "-o", str(out), "--force", "--json"]
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "EDGE_CACHE": str(lowering_cache(Path(cache)))}
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment)
        _, status, usage = os.wait4(process.pid, 0)
        output = process.stdout.read().decode()
    if status != 0:
        raise SystemExit(f"edge compile {mode} failed ({status})")
    result = json.loads(output)
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2),
            "graphs": result["graphs"]}


def masked_psnr(reference: torch.Tensor, value: torch.Tensor, mask: torch.Tensor) -> float:
    inside = mask.expand_as(reference) > 0.5
    mse = (reference[inside] - value[inside]).double().pow(2).mean()
    return float("inf") if mse == 0 else round(float(10 * torch.log10(1.0 / mse)), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["fp32", "int8", "int8-dynamic"])
    parser.add_argument("--reuse", action="store_true", help="reuse bundles already in out/bench-*")
    parser.add_argument("--profile", default="int8", help="the mode whose UNet gets the op profile")
    parser.add_argument("--label", default="", help="write results/xnnpack-LABEL.json and a README table of its own")
    args = parser.parse_args()
    for noisy in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    load_before = [round(x, 2) for x in os.getloadavg()]
    results_file = HERE / "results" / (f"xnnpack-{args.label}.json" if args.label else "xnnpack.json")
    (REPO / "out").mkdir(exist_ok=True)
    bundles = {mode: REPO / "out" / f"bench-{mode}" for mode in args.modes}
    compiled = {}
    for mode, path in bundles.items():
        print(f"compiling {mode} ...", file=sys.stderr, flush=True)
        compiled[mode] = compile_mode(mode, path, results_file if args.reuse else None)

    from edge.backends import get_backend
    from edge.bundle.bundle import open_bundle
    from edge.bundle.runner import BundleGraphs
    from edge.compile.graphs import build_graphs
    from edge.models import get_preset, load_unet, load_vae
    from edge.pipeline.loop import TorchGraphs, inpaint_tensors, start_noise
    from edge.quality.metrics import sqnr_db

    preset = get_preset("moebius-0.22b")
    torch_graphs = TorchGraphs(build_graphs(preset, load_unet(preset), load_vae(preset)))
    first = open_bundle(bundles[args.modes[0]])
    plan = first.sampling_plan()
    cases = {name: first.golden_case(name) for name in ("encoder", "unet", "decoder")}
    image = cases["encoder"][0][0]
    size = preset.image_size
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: size // 2, size // 4: 3 * size // 4] = 1
    noise = start_noise((1, 4, preset.latent_size, preset.latent_size), seed=0)

    runners = {"torch eager fp32": torch_graphs}
    runners.update({f"xnnpack {mode}": BundleGraphs(open_bundle(path)) for mode, path in bundles.items()})
    rows, reference_image = {}, None
    for label, graphs in runners.items():
        print(f"timing {label} ...", file=sys.stderr, flush=True)
        row = {}
        with torch.no_grad():
            calls = {"encoder": graphs.encode, "unet": graphs.denoise, "decoder": graphs.decode}
            for name, call in calls.items():
                inputs, _, reference = cases[name]
                row[f"{name}_s"] = measure(lambda: call(*inputs), args.runs)["median_s"]
                row[f"{name}_sqnr_db"] = round(sqnr_db(reference, call(*inputs)), 2)
            started = time.perf_counter()
            result = inpaint_tensors(graphs, plan, image, mask, noise)
            row["inpaint_s"] = round(time.perf_counter() - started, 2)
        if reference_image is None:
            reference_image = result.image01
        row["masked_psnr_db"] = masked_psnr(reference_image, result.image01, mask)
        rows[label] = row

    eager = rows["torch eager fp32"]
    for row in rows.values():
        row["unet_speedup"] = round(eager["unet_s"] / row["unet_s"], 2)
    ops = {}
    if args.profile in bundles:
        print(f"op profile of the {args.profile} unet ...", file=sys.stderr, flush=True)
        ops["unet"] = get_backend("xnnpack").op_profile(bundles[args.profile] / "unet.pte", cases["unet"][0], args.runs)
    result = {"schema": 1, "benchmark": "xnnpack", "model": preset.name, "weights": "random seed 0",
              "date": datetime.date.today().isoformat(), "machine": cpu_name(), "threads": torch.get_num_threads(),
              "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "torch": torch.__version__, "compile": compiled, "runtime": rows, "profiled": args.profile, "ops": ops,
              "unet_pte_mb": {m: round(bundles[m].joinpath("unet.pte").stat().st_size / 1e6, 1) for m in bundles}}
    (HERE / "results").mkdir(exist_ok=True)
    results_file.write_text(json.dumps(result, indent=1) + "\n")
    write_table(result, args.label)
    print(json.dumps(result, indent=1))


def write_table(result: dict, label: str) -> None:
    lines = [f"Measured {result['date']} on {result['machine']}, {result['threads']} threads, load average "
             f"{result['load_average_before']} before and {result['load_average_after']} after, torch {result['torch']}, "
             f"{result['model']} ({result['weights']}), 512x512; all rows in one run on the same held-out inputs. "
             "UNet at batch 2 (CFG); SQNR against torch fp32 on a held-out recorded input (middle step); "
             "masked PSNR: the full inpaint's output inside the mask against the fp32 pipeline, same start noise.", "",
             "| runner | UNet b2 s | speed-up | UNet SQNR dB | encoder s | enc SQNR | decoder s | dec SQNR | inpaint s | masked PSNR dB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for runner, row in result["runtime"].items():
        lines.append(f"| {runner} | {row['unet_s']} | {row['unet_speedup']}x | {row['unet_sqnr_db']} | {row['encoder_s']} | "
                     f"{row['encoder_sqnr_db']} | {row['decoder_s']} | {row['decoder_sqnr_db']} | {row['inpaint_s']} | "
                     f"{row['masked_psnr_db']} |")
    lines += ["", "| mode | compile s (3 graphs, one process) | peak RSS GB | UNet .pte MB | UNet lowering s | partitions (enc/unet/dec) |",
              "|---|---|---|---|---|---|"]
    for mode, entry in result["compile"].items():
        graphs = entry["graphs"]
        partitions = "/".join(str(graphs[n]["partitions"]) for n in ("encoder", "unet", "decoder"))
        lines.append(f"| {mode} | {entry['seconds']} | {entry['peak_rss_gb']} | {result['unet_pte_mb'][mode]} | "
                     f"{graphs['unet']['seconds']} | {partitions} |")
    if result["ops"]:
        lines += ["", *op_table({"quant": result["profiled"], "ops": result["ops"]}, "unet")]
    if label:
        write_section(f"XNNPACK-{label.upper()}", f"XNNPACK {label} (`xnnpack.py --label {label}`)", lines)
    else:
        write_section("XNNPACK", "XNNPACK bundles (`xnnpack.py`)", lines)


if __name__ == "__main__":
    main()
