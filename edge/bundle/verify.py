"""`edge verify`: a bundle's hashes, then its golden self-check (each program re-run on its golden input must
give the output it gave at compile time), or, for a target with no runtime here, a structural check."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.backends.contract import InspectsPrograms
from edge.bundle.bundle import Bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.quality.metrics import sqnr_db

GOLDEN_RELATIVE_TOLERANCE = 1e-4  # max abs against the golden output, relative to its scale (at least 1)


@dataclass
class VerifyResult:
    bundle: str
    problems: list[str]
    self_check: str  # "ran", "structural (...)" or "skipped: ..."
    hashes_ok: bool
    graphs: dict[str, dict] = field(default_factory=dict)  # per graph: the self-check's numbers, or the inspection

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"bundle": self.bundle, "hashes_ok": self.hashes_ok, "problems": self.problems, "graphs": self.graphs,
                "ok": self.ok, "self_check": self.self_check}


def verify_bundle(bundle: Bundle, runs_here: bool) -> VerifyResult:
    problems = bundle.hash_problems()
    backend = bundle.backend()
    if problems or not runs_here and not isinstance(backend, InspectsPrograms):
        why = "hash mismatch" if problems else "no runtime for this target here"
        return VerifyResult(str(bundle.path), problems, f"skipped: {why}", not problems)
    result = VerifyResult(str(bundle.path), [], "ran", True)
    for name in GRAPH_NAMES:
        if runs_here:
            inputs, expected, reference = bundle.golden_case(name)
            output = bundle.load_program(name)(*inputs)
            error = (output - expected).abs().max().item()
            passed = error <= GOLDEN_RELATIVE_TOLERANCE * max(1.0, expected.abs().max().item())
            result.graphs[name] = {"max_abs_vs_golden": error, "passed": passed,
                                   "sqnr_db_vs_fp32": round(sqnr_db(reference, output), 2)}
            problem = None if passed else f"output differs from the golden output by {error:.3g}"
        else:  # no runtime here: the backend checks each program's structure instead
            inspection = backend.inspect(bundle.graph_file(name))
            result.graphs[name], problem = inspection.to_json(), inspection.problem
        if problem:
            result.problems.append(f"{name}: {problem}")
    if not runs_here:
        result.self_check = "structural (no runtime for this target here)"
    return result
