"""Where an ExecuTorch program's time goes: an ETDump read with ExecuTorch's Inspector, ops ranked by time.

The XNNPACK delegate reports each of its operators ("Convolution (NHWC, QC8) DWConv #3"); the
instance number is dropped so every call of one operator kind adds up. Ops outside delegates come
as their kernel names. The wrapping events (method execute, delegate call) are totals, not ops.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from pathlib import Path

from edge.errors import EdgeError

TOP_OPS = 15
WRAPPERS = ("Method::execute", "DELEGATE_CALL", "OPERATOR_CALL", "Method::init", "Program::load_method")
INSTANCE = re.compile(r"\s+#\d+$")  # "Add (ND) #12" -> "Add (ND)"


def op_breakdown(etdump: Path, limit: int = TOP_OPS) -> dict:
    """{"runs", "execute_ms" (per run), "ops_ms" (sum of the ops, per run), "top": [{op, delegated,
    calls_per_run, ms_per_run, share}]}, ranked by time, from every execution the dump recorded."""
    from executorch.devtools import Inspector

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Output Buffer not found": we record no tensors, only times
        try:
            inspector = Inspector(etdump_path=str(etdump))
        except Exception as err:  # the Inspector raises bare exceptions on a truncated or foreign file
            raise EdgeError(f"{etdump}: not a readable ETDump ({err.__class__.__name__}: {err})") from err
    totals: dict[tuple[str, bool], float] = defaultdict(float)
    calls: dict[tuple[str, bool], int] = defaultdict(int)
    runs, execute_ms = 0, 0.0
    for block in inspector.event_blocks:
        for event in block.events:
            if event.perf_data is None:
                continue
            if event.name == "Method::execute":
                runs = max(runs, len(event.perf_data.raw))
                execute_ms += sum(event.perf_data.raw)
            if event.name in WRAPPERS:
                continue
            key = (INSTANCE.sub("", event.name), bool(event.is_delegated_op))
            totals[key] += sum(event.perf_data.raw)
            calls[key] += len(event.perf_data.raw)
    runs = max(runs, 1)
    ops_ms = sum(totals.values())
    ranked = sorted(totals, key=totals.get, reverse=True)[:limit]
    top = [{"op": op, "delegated": delegated, "calls_per_run": calls[op, delegated] // runs,
            "ms_per_run": round(totals[op, delegated] / runs, 3),
            "share": round(totals[op, delegated] / ops_ms, 4) if ops_ms else 0.0} for op, delegated in ranked]
    return {"runs": runs, "execute_ms": round(execute_ms / runs, 3), "ops_ms": round(ops_ms / runs, 3), "top": top}
