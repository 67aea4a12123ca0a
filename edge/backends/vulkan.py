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
(same export, same rewrites) run in torch fp32: `numerics_proxy` says so. (Lowering them for XNNPACK fp32
instead, as edge did before, measured the same numbers, 106-121 dB from torch on moebius-tiny, for
minutes of lowering per check.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edge.backends.common import delegation_report, executorch_export, executorch_versions
from edge.backends.contract import Calibration, InspectionResult, LoweredGraph, NumericsProxy, Program
from edge.compile.graphs import PreparedGraph
from edge.errors import EdgeError

QUANT_MODES = {"fp16": "the GPU computes in fp16 (inputs and outputs fp32)", "fp32": "the GPU computes in fp32"}
DELEGATE_ID = "VulkanBackend"
NUMERICS_PROXY = NumericsProxy("no Vulkan runtime on this machine: numerics are those of the same prepared graphs "
                               "(same export, same rewrites) run in torch fp32; fp16 GPU rounding is not simulated")


class VulkanBackend:
    name = "vulkan"
    quant_modes = QUANT_MODES
    options: dict[str, tuple[str, ...]] = {}  # no target options
    numerics_proxy = NUMERICS_PROXY

    def lower(self, graph: PreparedGraph, quant: str, calibration: Calibration, float_modules: tuple[str, ...] = (),
              options: Mapping[str, str] | None = None) -> LoweredGraph:
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if float_modules:
            raise EdgeError("vulkan does not take mixed-precision recipes (its modes are float)")
        program = executorch_export(graph)
        edge = to_edge_transform_and_lower(program, partitioner=[VulkanPartitioner({"force_fp16": quant == "fp16"})])
        report = delegation_report(edge)
        payload = edge.to_executorch().buffer
        report["numerics_proxy"] = NUMERICS_PROXY.to_json()
        return LoweredGraph(graph.name, payload, ["all (fp32)"] if quant == "fp32" else ["none (fp16 compute)"], report)

    def inspect(self, path: Path) -> InspectionResult:
        """Structural check of a .pte without a runtime: parses, one plan, only Vulkan delegates."""
        from executorch.exir._serialize._program import deserialize_pte_binary

        try:
            program = deserialize_pte_binary(Path(path).read_bytes()).program
        except Exception as err:  # noqa: BLE001 - any parse failure means a damaged program
            return InspectionResult(False, f"not an ExecuTorch program ({type(err).__name__}: {err})")
        delegates = [d.id for plan in program.execution_plan for d in plan.delegates]
        problem = None
        if len(program.execution_plan) != 1:
            problem = f"{len(program.execution_plan)} execution plans, expected 1"
        elif not delegates or set(delegates) != {DELEGATE_ID}:
            problem = f"delegates {delegates}, expected {DELEGATE_ID} only"
        return InspectionResult(problem is None, problem, len(delegates))

    def load(self, path: Path) -> Program:
        raise EdgeError(f"{path}: Vulkan programs cannot run on this machine (the pip ExecuTorch runtime has no "
                        "Vulkan backend); edge check measures the same prepared graphs in torch instead")

    def versions(self) -> dict[str, str]:
        return executorch_versions()


BACKEND = VulkanBackend()
