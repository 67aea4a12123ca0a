"""What several backends share: calibration striding, cache keys of prepared graphs, and reading ExecuTorch
edge programs.

Not a backend itself: backends import it, never each other.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from importlib.metadata import version

import torch

from edge.backends.contract import Calibration, Sample
from edge.compile.graphs import PreparedGraph


def strided(calibration: Calibration, most: int) -> list[Sample]:
    """At most `most` samples, evenly strided over the recordings so that every timestep stays represented."""
    stride = max(1, -(-len(calibration) // most))
    return list(calibration)[::stride]


def graph_digest(graph: PreparedGraph, *tools: str) -> str:
    """What a conversion of the graph depends on: module structure, every parameter and buffer, input shapes,
    and the versions of torch and of the named tool distributions (the key of a backend's conversion cache)."""
    digest = hashlib.sha256()
    digest.update(repr(graph.module).encode())
    digest.update(json.dumps([list(t.shape) for t in graph.example_inputs]).encode())
    digest.update(json.dumps([torch.__version__, *(version(tool) for tool in tools)]).encode())
    for name, tensor in [*graph.module.named_parameters(), *graph.module.named_buffers()]:
        digest.update(name.encode())
        digest.update(json.dumps(list(tensor.shape)).encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


def count_call_nodes(program: torch.export.ExportedProgram | torch.fx.GraphModule) -> int:
    return sum(1 for n in program.graph.nodes if n.op == "call_function")


# --- ExecuTorch (the xnnpack and vulkan backends) -------------------------------------------------

def executorch_export(graph: PreparedGraph) -> torch.export.ExportedProgram:
    """torch.export at the graph's static shapes, constants propagated (folds the fixed conditioning's path)."""
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    return constant_prop_pass(torch.export.export(graph.module, graph.example_inputs, strict=False))


def executorch_versions() -> dict[str, str]:
    return {"torch": torch.__version__, "executorch": version("executorch")}


def _op_name(target) -> str:
    text = str(target)  # "<EdgeOpOverload: aten.add.Tensor>: schema = ..."
    return text.removeprefix("<EdgeOpOverload: ").split(">")[0]


def _is_delegate_call(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and "executorch_call_delegate" in str(node.target)


def delegation_report(edge) -> dict:
    """Of an EdgeProgramManager after partitioning: delegate partitions, ops left outside them (by name), and
    how many of the program's ops the delegates took."""
    module = edge.exported_program().graph_module
    outside = Counter(_op_name(n.target) for n in module.graph.nodes if n.op == "call_function"
                      and not _is_delegate_call(n) and "getitem" not in str(n.target))
    delegated = sum(count_call_nodes(getattr(module, n.args[0].target).original_module)
                    for n in module.graph.nodes if _is_delegate_call(n))  # args[0]: the LoweredBackendModule
    total = delegated + sum(outside.values())
    return {"partitions": sum(1 for n in module.graph.nodes if _is_delegate_call(n)),
            "ops_outside_delegates": dict(outside), "delegated_ops": delegated,
            "delegated_fraction": round(delegated / total, 4) if total else 0.0}

