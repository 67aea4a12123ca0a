"""Ahead-of-time compilation of LiteRT flatbuffers for vendor NPUs (`edge compile --target tflite --npu SOC`).

ai-edge-litert ships each vendor's compiler plugin (ai_edge_litert/vendors/<vendor>/compiler), but the
plugins load the vendor's own SDK libraries (Qualcomm QAIRT's libQnnHtp.so, MediaTek NeuroPilot's
NeuronAdapter, ...). Those come from the vendor SDK packages on PyPI, which download the SDK from the
vendor's site when installed. Where a plugin cannot run, the error names the missing library and package.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

# vendor module in ai_edge_litert.aot.vendors -> the PyPI package that provides its SDK libraries
SDK_PACKAGES = {
    "qualcomm": "ai-edge-litert-sdk-qualcomm (its install downloads QAIRT from softwarecenter.qualcomm.com)",
    "mediatek": "ai-edge-litert-sdk-mediatek (its install downloads NeuroPilot from mediatek.neuropilot.com)",
    "google_tensor": "ai-edge-litert-sdk-google-tensor",
    "samsung": "ai-edge-litert-sdk-samsung-nightly",
}


@dataclass(frozen=True)
class NpuTarget:
    vendor: str  # module name under ai_edge_litert.aot.vendors
    soc: str  # the SoC model as the vendor names it (SM8650, MT6989, Tensor_G4, E9965)
    target: object  # the vendor's aot Target

    def to_json(self) -> dict:
        return {"vendor": self.vendor, "soc": self.soc, "sdk_package": SDK_PACKAGES[self.vendor].split(" ")[0]}


def _targets() -> dict[str, tuple[str, object]]:
    """Upper-cased SoC name -> (vendor, the vendor's target module)."""
    socs = {}
    for vendor in SDK_PACKAGES:
        module = importlib.import_module(f"ai_edge_litert.aot.vendors.{vendor}.target")
        socs.update({model.value.upper(): (vendor, module) for model in module.SocModel if model.value != "ALL"})
    return socs


def npu_target(soc: str) -> NpuTarget:
    socs = _targets()
    if soc.upper() not in socs:
        raise EdgeError(f"unknown NPU SoC '{soc}': known are {', '.join(sorted(socs))}")
    vendor, module = socs[soc.upper()]
    model = next(m for m in module.SocModel if m.value.upper() == soc.upper())
    return NpuTarget(vendor, model.value, module.Target(model))


def compile_for_npu(payload: bytes, npu: NpuTarget) -> bytes:
    """The flatbuffer with the subgraphs the vendor plugin takes compiled for the NPU (the rest stays on CPU)."""
    from ai_edge_litert.aot import aot_compile
    from ai_edge_litert.aot.core import aot_types

    result = aot_compile.aot_compile(aot_types.Model.create_from_bytes(payload), target=npu.target, keep_going=True)
    if result.models:
        return result.models[0].model_bytes
    reason = _failure_reason(result.failed_backends[0][1]) if result.failed_backends else "no model came back"
    raise EdgeError(f"--npu {npu.soc}: the {npu.vendor} compiler plugin failed ({reason}); it needs the vendor SDK "
                    f"from {SDK_PACKAGES[npu.vendor]}, which is not installed here")


def _failure_reason(message: str) -> str:
    """The line that says why, from the plugin log the failure message points to ('See FILE for details')."""
    found = re.search(r"See (\S+?\.error)", message)
    log = Path(found.group(1)).read_text(errors="replace") if found and Path(found.group(1)).is_file() else message
    missing = re.search(r"(lib[\w.]+\.so[\w.]*): cannot open shared object file", log)
    if missing:
        return f"{missing.group(1)} missing"
    for pattern in (r"(lib[\w.]+\.so): (undefined symbol: \S+)", r"(Failed to load \w+ shared library)"):
        found = re.search(pattern, log)
        if found:
            return " ".join(found.groups())
    errors = [line.strip() for line in log.splitlines() if "ERROR" in line]
    return errors[-1] if errors else message.strip()
