"""Baseline: torch eager fp32 at full size (moebius-0.22b, random weights) on this machine.

The row every compiled target must beat. Measures one UNet call at batch 1 and 2 (CFG), the VAE
encoder and decoder at 512x512, one full 19-step 512x512 inpaint, parameter count and FLOPs, and
the exported UNet graph's node count. Writes benchmarks/results/baseline.json and the table in
benchmarks/README.md (between the BASELINE markers).

    .venv/bin/python benchmarks/baseline.py [--runs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
from pathlib import Path

import torch
from readme_section import write_section
from timing import measure
from torch.utils.flop_counter import FlopCounterMode

from edge.compile.graphs import build_graphs
from edge.models import cfg_input_ids, get_preset, load_unet, load_vae
from edge.pipeline.loop import TorchGraphs, inpaint_tensors, sampling_plan, start_noise
from edge.pipeline.schedule import ddim_schedule

HERE = Path(__file__).resolve().parent


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    for noisy in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    preset = get_preset("moebius-0.22b")
    unet, vae = load_unet(preset), load_vae(preset)
    graphs = build_graphs(preset, unet, vae)
    size, side = preset.image_size, preset.latent_size
    rows = {}

    latent1 = torch.randn(1, 9, side, side)
    latent2 = torch.randn(2, 9, side, side)
    ids1, ids2 = cfg_input_ids(1)[1:], cfg_input_ids(1)
    t1, t2 = torch.tensor([500]), torch.tensor([500])
    rows["unet_b1"] = measure(lambda: unet(latent1, t1, ids1), args.runs)
    rows["unet_b2"] = measure(lambda: unet(latent2, t2, ids2), args.runs)
    image = torch.rand(1, 3, size, size) * 2 - 1
    rows["vae_encoder"] = measure(lambda: graphs["encoder"].module(image), args.runs)
    latent = torch.randn(1, 4, side, side)
    rows["vae_decoder"] = measure(lambda: graphs["decoder"].module(latent), args.runs)

    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: size // 2, size // 4: 3 * size // 4] = 1
    plan = sampling_plan(preset.unet.time_features, ddim_schedule(), guidance=2.0)
    noise = start_noise((1, 4, side, side), seed=0)
    rows["inpaint_19_steps"] = measure(lambda: inpaint_tensors(TorchGraphs(graphs), plan, image, mask, noise),
                                     runs=1, warmup=0)

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(latent1, t1, ids1)
    program = graphs["unet"].export()
    nodes = sum(1 for n in program.graph.nodes if n.op == "call_function")
    core_nodes = sum(1 for n in program.run_decompositions().graph.nodes if n.op == "call_function")

    result = {
        "schema": 1, "benchmark": "baseline-torch-eager-fp32", "model": preset.name, "weights": "random seed 0",
        "date": datetime.date.today().isoformat(), "machine": {"cpu": cpu_name(), "threads": args.threads,
                                                               "torch": torch.__version__, "python": platform.python_version()},
        "parameters_unet": sum(p.numel() for p in unet.parameters()),
        "parameters_vae": sum(p.numel() for p in vae.parameters()),
        "unet_gflops_b1": round(counter.get_total_flops() / 1e9, 1),
        "unet_export_nodes": nodes, "unet_core_aten_nodes": core_nodes,
        "latency": rows,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "baseline.json").write_text(json.dumps(result, indent=1) + "\n")
    write_table(result)
    print(json.dumps(result, indent=1))


def write_table(result: dict) -> None:
    latency = result["latency"]
    machine = result["machine"]
    lines = [
             f"Measured {result['date']} on {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}; "
             f"{result['model']}, {result['weights']}, 512x512, fp32 eager. Median of {latency['unet_b1']['runs']} runs after one warm-up "
             "(the full inpaint: one run).", "",
             "| what | median s | min s | max s |", "|---|---|---|---|"]
    labels = {"unet_b1": "UNet call, batch 1", "unet_b2": "UNet call, batch 2 (CFG)", "vae_encoder": "VAE encoder",
              "vae_decoder": "VAE decoder", "inpaint_19_steps": "full inpaint (2 encodes, 19 CFG steps, decode)"}
    for key, label in labels.items():
        row = latency[key]
        lines.append(f"| {label} | {row['median_s']} | {row['min_s']} | {row['max_s']} |")
    lines += ["", f"UNet {result['parameters_unet'] / 1e6:.2f}M parameters, VAE {result['parameters_vae'] / 1e6:.2f}M; "
              f"UNet {result['unet_gflops_b1']} GFLOPs per call at batch 1 (torch FLOP counter); exported UNet graph "
              f"{result['unet_export_nodes']} nodes ({result['unet_core_aten_nodes']} in core ATen)."]
    write_section("BASELINE", "Baseline: torch eager fp32 (`baseline.py`)", lines)


if __name__ == "__main__":
    main()
