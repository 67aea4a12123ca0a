"""ExecuTorch with the Vulkan delegate (Android GPUs): lowering to `.pte`; compile-only on this machine.

Stages (each takes one object and returns the next, as in ExecuTorch's own API):
  PreparedGraph --export--> ExportedProgram --constant_prop--> ExportedProgram
  --to_edge_transform_and_lower(VulkanPartitioner)--> EdgeProgramManager --to_executorch--> bytes

Quant modes:
  fp16  the GPU computes in fp16 (the delegate's force_fp16); inputs and outputs stay fp32.
  fp32  the GPU computes in fp32.

This machine has no Android GPU and the pip ExecuTorch runtime has no Vulkan backend, so a Vulkan
bundle cannot run here. `inspect` checks its programs structurally (flatbuffer parses, one execution
plan, every delegate is VulkanBackend), and `edge check` measures numerics on the same prepared graphs
(same export, same rewrites) lowered for XNNPACK in fp32: `numerics_proxy` names that backend.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from edge.backends import LoweredGraph, Program
from edge.errors import EdgeError

QUANT_MODES = ("fp16", "fp32")
DELEGATE_ID = "VulkanBackend"
NUMERICS_PROXY = {"backend": "xnnpack", "quant": "fp32",
                  "why": "no Vulkan runtime on this machine: numerics are those of the same prepared graph "
                         "(same export, same rewrites) lowered for XNNPACK in fp32; fp16 GPU rounding is not simulated"}


def _check_quant(quant: str) -> None:
    if quant not in QUANT_MODES:
        raise EdgeError(f"vulkan has no quant mode '{quant}': choose one of {', '.join(QUANT_MODES)}")


def _op_name(target) -> str:
    text = str(target)  # "<EdgeOpOverload: aten.add.Tensor>: schema = ..."
    return text.removeprefix("<EdgeOpOverload: ").split(">")[0]


def _is_delegate_call(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and "executorch_call_delegate" in str(node.target)


def delegation_report(edge) -> dict:
    """Partitions, ops left outside the delegate, and the delegated fraction of the edge program's ops."""
    module = edge.exported_program().graph_module
    outside = Counter(_op_name(n.target) for n in module.graph.nodes if n.op == "call_function"
                      and not _is_delegate_call(n) and "getitem" not in str(n.target))
    delegated = 0
    for node in module.graph.nodes:
        if _is_delegate_call(node):
            lowered = getattr(module, node.args[0].target)  # the LoweredBackendModule
            delegated += sum(1 for n in lowered.original_module.graph.nodes if n.op == "call_function")
    total = delegated + sum(outside.values())
    return {"partitions": sum(1 for n in module.graph.nodes if _is_delegate_call(n)),
            "ops_outside_delegates": dict(outside), "delegated_ops": delegated,
            "delegated_fraction": round(delegated / total, 4) if total else 0.0}


class VulkanBackend:
    name = "vulkan"
    options: dict[str, tuple[str, ...]] = {}  # no target options
    numerics_proxy = NUMERICS_PROXY

    def lower(self, graph, quant: str, calibration: Sequence[tuple[torch.Tensor, ...]],
              float_modules: tuple[str, ...] = (), options: Mapping[str, str] | None = None) -> LoweredGraph:
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.exir.passes.constant_prop_pass import constant_prop_pass

        _check_quant(quant)
        if float_modules:
            raise EdgeError("vulkan does not take mixed-precision recipes (its modes are float)")
        started = time.perf_counter()
        program = constant_prop_pass(torch.export.export(graph.module, graph.example_inputs, strict=False))
        edge = to_edge_transform_and_lower(program, partitioner=[VulkanPartitioner({"force_fp16": quant == "fp16"})])
        report = delegation_report(edge)
        payload = edge.to_executorch().buffer
        report.update({"numerics_proxy": NUMERICS_PROXY, "seconds": round(time.perf_counter() - started, 1)})
        return LoweredGraph(graph.name, payload, ["all (fp32)"] if quant == "fp32" else ["none (fp16 compute)"], report)

    def inspect(self, path: Path) -> dict:
        """Structural check of a .pte without a runtime: parses, one plan, only Vulkan delegates."""
        from executorch.exir._serialize._program import deserialize_pte_binary

        try:
            program = deserialize_pte_binary(Path(path).read_bytes()).program
        except Exception as err:  # noqa: BLE001 - any parse failure means a damaged program
            return {"passed": False, "problem": f"not an ExecuTorch program ({type(err).__name__}: {err})"}
        delegates = [d.id for plan in program.execution_plan for d in plan.delegates]
        problem = None
        if len(program.execution_plan) != 1:
            problem = f"{len(program.execution_plan)} execution plans, expected 1"
        elif not delegates or set(delegates) != {DELEGATE_ID}:
            problem = f"delegates {delegates}, expected {DELEGATE_ID} only"
        return {"passed": problem is None, "problem": problem, "delegates": len(delegates)}

    def load(self, path: Path) -> Program:
        raise EdgeError(f"{path}: Vulkan programs cannot run on this machine (the pip ExecuTorch runtime has no "
                        "Vulkan backend); edge check measures them on the same graphs lowered for XNNPACK")

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"torch": torch.__version__, "executorch": version("executorch")}


BACKEND = VulkanBackend()
