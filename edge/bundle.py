"""The bundle: the folder an app ships. Three programs, manifest.json, timestep features, golden I/O.

Written into a temporary sibling folder and renamed into place at the end, so an interrupted compile
leaves nothing that looks like a bundle. `verify_bundle` checks every file's hash and re-runs the
golden self-check where the runtime exists here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from edge.errors import EdgeError
from edge.metrics import sqnr_db
from edge.models.weights import file_sha256
from edge.pipeline import CallableGraphs, SamplingPlan
from edge.schedule import DDIMSchedule

SCHEMA = 1
MANIFEST = "manifest.json"
TIME_FEATURES = "time_features.f32"  # (steps, F) float32 little-endian, row i for sampling step i
GOLDEN = "golden.safetensors"
GRAPH_NAMES = ("encoder", "unet", "decoder")


class BundleWriter:
    """Collects a bundle's files in a temporary folder next to `out`; `commit` moves it into place."""

    def __init__(self, out: Path, force: bool):
        self.out = Path(out)
        if self.out.exists() and not force:
            raise EdgeError(f"{self.out}: already exists (pass --force to replace it)")
        if not self.out.parent.is_dir():
            raise EdgeError(f"{self.out}: folder {self.out.parent} does not exist")
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, payload: bytes | Path) -> Path:
        """Write one artifact: a file's bytes, or a folder the backend made (a Core ML .mlpackage), moved in."""
        path = self.folder / name
        try:
            if isinstance(payload, Path):
                shutil.move(payload, path)
            else:
                path.write_bytes(payload)
        except OSError as err:
            self.abort()
            raise EdgeError(f"{self.out}: could not write {name} ({err.strerror})") from err
        return path

    def commit(self, manifest: dict) -> Path:
        manifest["files"] = {p.relative_to(self.folder).as_posix(): file_sha256(p)
                             for p in sorted(self.folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
        self.write(MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        previous = None
        if self.out.exists():
            previous = self.out.with_name(f".{self.out.name}.replaced")
            os.replace(self.out, previous)
        os.replace(self.folder, self.out)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def artifact_bytes(path: Path) -> int:
    """Size of a written artifact: a file, or every file in a folder artifact."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class Bundle:
    path: Path
    manifest: dict

    def graph_file(self, name: str) -> Path:
        return self.path / self.manifest["graphs"][name]["file"]

    def sampling_plan(self) -> SamplingPlan:
        sampling = self.manifest["sampling"]
        scheduler = sampling["scheduler"]
        schedule = DDIMSchedule(tuple(scheduler["timesteps"]), tuple(scheduler["alphas_cumprod"]),
                                tuple(scheduler["alphas_cumprod_next"]))
        features = sampling["time_features"]
        table = np.fromfile(self.path / features["file"], dtype="<f4").reshape(features["shape"])
        return SamplingPlan(schedule, float(sampling["guidance"]), torch.from_numpy(table.copy()))


def read_bundle(path: Path) -> Bundle:
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise EdgeError(f"{path}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise EdgeError(f"{manifest_path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if manifest.get("schema") != SCHEMA:
        raise EdgeError(f"{manifest_path}: schema {manifest.get('schema')!r}, this edge reads schema {SCHEMA}")
    return Bundle(path, manifest)


def check_hashes(bundle: Bundle) -> list[str]:
    """Problems with the bundle's files: missing, or content not matching the manifest."""
    problems = []
    for name, expected in bundle.manifest.get("files", {}).items():
        path = bundle.path / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != expected:
            problems.append(f"{name} does not match its sha256 in the manifest")
    return problems


def golden_case(bundle: Bundle, graph: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """(inputs, output the program gave at compile time, fp32 torch reference output)."""
    golden = load_file(bundle.path / GOLDEN)
    count = sum(1 for key in golden if key.startswith(f"{graph}.input."))
    inputs = tuple(golden[f"{graph}.input.{j}"] for j in range(count))
    return inputs, golden[f"{graph}.output"], golden[f"{graph}.reference"]


class BundleGraphs(CallableGraphs):
    """A bundle's three programs in their runtime, as InpaintGraphs for the shared sampling loop."""

    def __init__(self, bundle: Bundle):
        from edge.backends import get_backend

        backend = get_backend(bundle.manifest["backend"])
        super().__init__(*(backend.load(bundle.graph_file(name)) for name in GRAPH_NAMES))


def verify_bundle(bundle: Bundle, runs_here: bool) -> dict:
    """Hashes, then the golden self-check: each program re-run on its golden input must give the
    output it gave at compile time (max abs within 1e-4 of the output's scale)."""
    from edge.backends import get_backend

    problems = check_hashes(bundle)
    result = {"bundle": str(bundle.path), "hashes_ok": not problems, "problems": problems, "graphs": {}}
    backend = get_backend(bundle.manifest["backend"])
    if not problems and not runs_here and hasattr(backend, "inspect"):
        for name in GRAPH_NAMES:  # no runtime here: the backend checks each program's structure instead
            result["graphs"][name] = backend.inspect(bundle.graph_file(name))
            problems += [f"{name}: {r['problem']}" for r in [result["graphs"][name]] if not r["passed"]]
        result.update(ok=not problems, problems=problems, self_check="structural (no runtime for this target here)")
        return result
    if problems or not runs_here:
        result["ok"] = not problems
        result["self_check"] = "skipped: " + ("hash mismatch" if problems else "no runtime for this target here")
        return result
    ok = True
    for name in GRAPH_NAMES:
        inputs, expected, reference = golden_case(bundle, name)
        output = backend.load(bundle.graph_file(name))(*inputs)
        error = (output - expected).abs().max().item()
        passed = error <= 1e-4 * max(1.0, expected.abs().max().item())
        ok &= passed
        result["graphs"][name] = {"max_abs_vs_golden": error, "passed": passed,
                                  "sqnr_db_vs_fp32": round(sqnr_db(reference, output), 2)}
    result["ok"] = ok
    result["self_check"] = "ran"
    return result
