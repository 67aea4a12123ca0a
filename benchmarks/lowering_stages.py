"""Where the time of lowering one graph to XNNPACK goes, stage by stage (the performance issue's compile-time goal).

Lowers moebius-tiny-trained's UNet (the graph CI lowers most often) in one quant mode through the backend's own
stages, timing each: export, PT2E prepare, calibration, convert, re-export, to_edge_transform_and_lower,
to_executorch. With --profile, to_edge_transform_and_lower runs a second time under cProfile, and the shares of
its named parts are printed (cProfile slows Python code about 2.4x, so only the shares mean anything; the parts
overlap where one calls another). Nothing is read from or written to the lowering cache.
Writes benchmarks/results/lowering_stages.json and its table in benchmarks/README.md.

    .venv/bin/python benchmarks/lowering_stages.py [--quant int8] [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import pstats
import time
from importlib.metadata import version
from pathlib import Path

import torch
from baseline import cpu_name
from readme_section import write_section

from edge.backends import xnnpack
from edge.backends.common import strided
from edge.compile.calibration import find_pairs, split_pairs
from edge.compile.graphs import prepare_graph
from edge.compile.prepare import default_sampling_plan, load_models, prepare
from edge.targets import load_target

HERE = Path(__file__).resolve().parent
MODEL = "moebius-tiny-trained"
# parts of to_edge_transform_and_lower, named by the function that runs each (file suffix, function name)
PARTS = {"XNNPACK preprocess: its graph passes": ("xnnpack/_passes/__init__.py", "transform"),
         "XNNPACK preprocess: serializing the graph": ("xnnpack/xnnpack_preprocess.py", "preprocess"),
         "decompositions (run_decompositions)": ("torch/export/exported_program.py", "run_decompositions"),
         "partitioning": ("xnnpack/partition/xnnpack_partitioner.py", "partition"),
         "IR validation (ExportedProgram._validate)": ("torch/export/exported_program.py", "_validate")}


def unet_graph():
    """The prepared UNet graph and its calibration samples, as `edge compile` would lower them."""
    models = load_models(MODEL, None, None, 0)
    calib_pairs, eval_pairs = split_pairs(find_pairs(Path(__file__).resolve().parent.parent / "calib_data"))
    prepared = prepare(models, default_sampling_plan(models.preset), calib_pairs, eval_pairs)
    graph = prepare_graph(prepared.graphs["unet"], load_target("xnnpack").rewrites, prepared.golden_inputs()["unet"])
    return graph, strided(prepared.calibration["unet"], xnnpack.MAX_CALIBRATION_SAMPLES)


def timed_stages(graph, calibration, quant: str) -> tuple[dict[str, float], torch.fx.GraphModule, int]:
    """{stage: seconds}, the converted (quantized) graph, and the call nodes of the program lowered from it."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    seconds, started = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal started
        now = time.perf_counter()
        seconds[stage], started = round(now - started, 1), now

    program = xnnpack._exported(graph, quant)
    lap("export (torch.export + constant propagation)")
    observed = prepare_pt2e(program.module(), xnnpack._quantizer(quant, ()))
    lap("PT2E prepare")
    with torch.no_grad():
        for sample in calibration:
            observed(*sample)
    lap(f"calibration ({len(calibration)} samples)")
    converted = convert_pt2e(observed)
    lap("PT2E convert")
    program = lowerable(graph, converted)
    lap("re-export of the quantized graph")
    nodes = sum(1 for node in program.graph.nodes if node.op == "call_function")
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    lap("to_edge_transform_and_lower")
    edge.to_executorch()
    lap("to_executorch")
    return seconds, converted, nodes


def lowerable(graph, converted: torch.fx.GraphModule) -> torch.export.ExportedProgram:
    """The quantized graph exported again, as the backend hands it to to_edge_transform_and_lower."""
    return xnnpack._split_repeated_cat_inputs(torch.export.export(converted, graph.example_inputs, strict=False))


def profiled_shares(program: torch.export.ExportedProgram) -> dict[str, float]:
    """{part: share of to_edge_transform_and_lower's time}, from one run under cProfile."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    profile = cProfile.Profile()
    profile.runcall(to_edge_transform_and_lower, program, partitioner=[XnnpackPartitioner()])
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, primitive, own s, cumulative s, callers)}
    total = max(entry[3] for (_, _, function), entry in stats.items() if function == "to_edge_transform_and_lower")

    def cumulative(file_suffix: str, function: str) -> float:
        return max((entry[3] for (file, _, name), entry in stats.items() if file.endswith(file_suffix) and name == function),
                   default=0.0)

    shares = {part: cumulative(*where) / total for part, where in PARTS.items()}
    preprocess = "XNNPACK preprocess: serializing the graph"  # preprocess minus its passes
    shares[preprocess] -= shares["XNNPACK preprocess: its graph passes"]
    return {part: round(share, 3) for part, share in shares.items()}


def table(result: dict) -> list[str]:
    total = sum(result["stages"].values())
    lines = [f"Measured {result['date']} on {result['machine']}, {result['threads']} threads, load average "
             f"{result['load_average_before']} before and {result['load_average_after']} after; torch "
             f"{result['torch']}, executorch {result['executorch']}; {MODEL}'s UNet in XNNPACK `{result['quant']}` "
             f"({result['nodes']} call nodes after quantization), one lowering.", "",
             "| stage | s | share |", "|---|---|---|"]
    lines += [f"| {stage} | {s} | {s / total:.0%} |" for stage, s in result["stages"].items()]
    lines.append(f"| **all** | **{round(total, 1)}** | |")
    if result["profile"]:
        lines += ["", "Inside to_edge_transform_and_lower (shares of one cProfile run; the parts may overlap):", "",
                  "| part | share |", "|---|---|"]
        lines += [f"| {part} | {share:.0%} |" for part, share in result["profile"].items()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quant", default="int8", choices=[mode for mode in xnnpack.QUANT_MODES if mode != "fp32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also profile to_edge_transform_and_lower")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f"preparing {MODEL}'s UNet (calibration recordings from $EDGE_CACHE)", flush=True)
    graph, calibration = unet_graph()
    print(f"lowering it in {args.quant}, stage by stage", flush=True)
    stages, converted, nodes = timed_stages(graph, calibration, args.quant)
    load_after = [round(x, 2) for x in os.getloadavg()]  # before the profiled run, which is not timed
    if args.profile:
        print("profiling to_edge_transform_and_lower", flush=True)
    result = {"date": datetime.date.today().isoformat(), "machine": cpu_name(), "threads": args.threads,
              "torch": torch.__version__, "executorch": version("executorch"), "quant": args.quant, "nodes": nodes,
              "load_average_before": load_before, "load_average_after": load_after, "stages": stages,
              "profile": profiled_shares(lowerable(graph, converted)) if args.profile else {}}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "lowering_stages.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = table(result)
    write_section("LOWERING_STAGES", "Lowering one graph, stage by stage (`lowering_stages.py`)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
