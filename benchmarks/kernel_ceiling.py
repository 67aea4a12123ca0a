"""The speed-up ceiling of XNNPACK's kernels over torch eager on this machine, one UNet-shaped op at a time.

The int8 UNet cannot beat eager by more than its GEMMs do: the convolutions and linears are 60% of its
time and everything else in it runs in fp32 (or is pure overhead: transposes, converts). So each
3x3 convolution and token linear of the three UNet levels of moebius-0.22b at 512² (batch 2, as under
CFG) is timed alone: torch eager fp32, XNNPACK fp32, and XNNPACK int8 with our int8 mode's quantization
(static, symmetric, per-channel weights), each lowered as a one-op program and run in executorch.runtime.
Writes benchmarks/results/kernel_ceiling.json and its table in benchmarks/README.md.

    .venv/bin/python benchmarks/kernel_ceiling.py [--runs 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

import torch
from baseline import cpu_name
from readme_section import write_section
from timing import measure
from torch import nn

HERE = Path(__file__).resolve().parent
# (op, channels, latent side) of moebius-0.22b's three UNet levels at 512x512 (64x64 latents)
SHAPES = [("conv3x3", 320, 64), ("conv3x3", 640, 32), ("conv3x3", 1280, 16),
          ("linear", 320, 64), ("linear", 640, 32), ("linear", 1280, 16)]
BATCH = 2


def one_op(op: str, channels: int, side: int) -> tuple[nn.Module, torch.Tensor, int]:
    """The module, an input, and its operation count (2 per multiply-accumulate)."""
    if op == "conv3x3":
        module, example = nn.Conv2d(channels, channels, 3, padding=1), torch.randn(BATCH, channels, side, side)
        return module.eval(), example, 2 * BATCH * side * side * channels * channels * 9
    tokens = BATCH * side * side
    module, example = nn.Linear(channels, channels), torch.randn(tokens, channels)  # (B*N, C) token table
    return module.eval(), example, 2 * tokens * channels * channels


def xnnpack_method(module: nn.Module, example: torch.Tensor, int8: bool):
    """The module as a one-op XNNPACK program: (its bytes, its loaded method, which reads those bytes in place)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    program = torch.export.export(module, (example,))
    if int8:
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        observed = prepare_pt2e(program.module(), quantizer)
        observed(example)
        program = torch.export.export(convert_pt2e(observed), (example,))
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    return buffer, Runtime.get().load_program(buffer).load_method("forward")


def measure_op(op: str, channels: int, side: int, runs: int) -> dict:
    torch.manual_seed(0)
    module, example, ops = one_op(op, channels, side)
    seconds = {"eager fp32": measure(lambda: module(example), runs, warmup=2, digits=6)["median_s"]}
    for mode in ("fp32", "int8"):
        buffer, method = xnnpack_method(module, example, int8=mode == "int8")  # buffer held while the method runs
        seconds[f"xnnpack {mode}"] = measure(lambda: method.execute([example]), runs, warmup=2, digits=6)["median_s"]
    eager = seconds["eager fp32"]
    return {"op": op, "channels": channels, "side": side, "gop": round(ops / 1e9, 2),
            "runners": {name: {"s": s, "gop_per_s": round(ops / s / 1e9), "vs_eager": round(eager / s, 2)}
                        for name, s in seconds.items()}}


def table(result: dict) -> list[str]:
    lines = [f"Measured {result['date']} on {result['machine']}, {result['threads']} threads, load average "
             f"{result['load_average_before']} before and {result['load_average_after']} after; torch "
             f"{result['torch']}; median of {result['runs']} calls after 2 warm-ups, batch {BATCH}, random weights "
             f"and inputs (speed does not depend on them). GOP/s counts 2 operations per multiply-accumulate.", "",
             "| op | channels | latent side | GOP per call | eager fp32 GOP/s | XNNPACK fp32 GOP/s | XNNPACK int8 GOP/s | "
             "XNNPACK fp32 / eager | XNNPACK int8 / eager |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["ops"]:
        runners = row["runners"]
        lines.append(f"| {row['op']} | {row['channels']} | {row['side']} | {row['gop']} | "
                     f"{runners['eager fp32']['gop_per_s']} | {runners['xnnpack fp32']['gop_per_s']} | "
                     f"{runners['xnnpack int8']['gop_per_s']} | {runners['xnnpack fp32']['vs_eager']}x | "
                     f"**{runners['xnnpack int8']['vs_eager']}x** |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for op, channels, side in SHAPES:
        print(f"{op} {channels} channels at {side}x{side}", flush=True)
        rows.append(measure_op(op, channels, side, args.runs))
    result = {"date": datetime.date.today().isoformat(), "machine": cpu_name(), "threads": args.threads,
              "torch": torch.__version__, "runs": args.runs, "load_average_before": load_before,
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "ops": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "kernel_ceiling.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = table(result)
    write_section("KERNEL_CEILING", "Kernel ceiling: XNNPACK against eager, one op (`kernel_ceiling.py`)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
