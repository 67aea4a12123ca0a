"""Opening a bundle: the trust boundary between a folder someone handed us and the code that runs it.

`open_bundle` reads nothing else until it has checked, in order:
  1. manifest.json matches manifest.sha256 (a damaged or edited manifest stops here);
  2. the manifest against its schema (edge.bundle.manifest: types, finite numbers, paths relative and inside);
  3. every listed file resolves inside the bundle (no symlink out), is a regular file, and every file inside a
     folder artifact (a Core ML .mlpackage) is listed: nothing a runtime reads escapes the hashes;
  4. every listed file's sha256 (unless the caller lists hash problems itself: edge verify).
What the loop needs from it afterwards (programs, the sampling plan, the golden cases) fails with one EdgeError
naming the file, whatever the runtime raises.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from edge.backends.contract import Backend
from edge.bundle.manifest import MANIFEST, MANIFEST_DIGEST, Manifest, manifest_sha256
from edge.errors import EdgeError
from edge.files import parse_json
from edge.models.weights import file_sha256
from edge.pipeline.loop import SamplingPlan
from edge.targets import load_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest

    def backend(self) -> Backend:
        """The backend that runs this bundle: its target profile's, which must be the one the manifest names (the
        code that runs a bundle is chosen here, never by the bundle)."""
        profile = load_target(self.manifest.target)
        if profile.backend.name != self.manifest.backend:
            raise EdgeError(f"{self.path}: the manifest says backend {self.manifest.backend!r}, target "
                            f"{profile.name} is backend {profile.backend.name!r}")
        if self.manifest.quant not in profile.quant_modes:
            raise EdgeError(f"{self.path}: the manifest says quant {self.manifest.quant!r}, target {profile.name} "
                            f"has {', '.join(profile.quant_modes)}")
        return profile.backend

    def graph_file(self, name: str) -> Path:
        return self.path / self.manifest.graphs[name].file

    def load_program(self, name: str):
        """The graph's program loaded in its runtime; a program the runtime refuses is one EdgeError."""
        backend, path = self.backend(), self.graph_file(name)
        runtime_log = io.StringIO()  # what a runtime prints while loading (ExecuTorch's loader says why it refuses)
        try:
            with contextlib.redirect_stderr(runtime_log):
                return backend.load(path)
        except Exception as err:  # the runtimes raise RuntimeError, ValueError, their own types...: all mean "damaged"
            said = [line for line in runtime_log.getvalue().splitlines() if line.strip()]
            detail = said[-1] if said else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
            raise EdgeError(f"{path}: {backend.name} cannot load this program ({detail})") from err
        finally:
            if runtime_log.getvalue():
                log.debug(runtime_log.getvalue().rstrip())

    def sampling_plan(self) -> SamplingPlan:
        sampling = self.manifest.sampling
        features = sampling.time_features
        path = self.path / features.file
        table = np.fromfile(path, dtype="<f4")
        if table.size != features.shape[0] * features.shape[1]:
            raise EdgeError(f"{path}: {table.size} values, the manifest says {features.shape}")
        if not np.isfinite(table).all():
            raise EdgeError(f"{path}: holds non-finite values")
        return SamplingPlan(sampling.scheduler, sampling.guidance, torch.from_numpy(table.reshape(features.shape).copy()))

    def golden_case(self, graph: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
        """(inputs, output the program gave at compile time, fp32 torch reference output)."""
        path = self.path / self.manifest.golden
        try:
            golden = load_file(path)
        except (SafetensorError, OSError) as err:
            raise EdgeError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from err
        specs = self.manifest.graphs[graph]
        keys = [f"{graph}.input.{j}" for j in range(len(specs.inputs))] + [f"{graph}.output", f"{graph}.reference"]
        missing = [key for key in keys if key not in golden]
        if missing:
            raise EdgeError(f"{path}: lacks {missing[0]}")
        for key, spec in zip(keys, (*specs.inputs, specs.outputs[0], specs.outputs[0]), strict=True):
            if tuple(golden[key].shape) != spec.shape:
                raise EdgeError(f"{path}: {key} is {tuple(golden[key].shape)}, the manifest says {spec.shape}")
        inputs = tuple(golden[key] for key in keys[:-2])
        return inputs, golden[keys[-2]], golden[keys[-1]]

    def containment_problems(self) -> list[str]:
        """Listed files that resolve outside the bundle or are not regular files; files inside a folder artifact
        that the manifest does not list."""
        root = self.path.resolve()
        problems = []
        for name in self.manifest.files:
            path = self.path / name
            if not path.resolve().is_relative_to(root):
                problems.append(f"{name} resolves outside the bundle (a symlink out of it)")
            elif path.exists() and not path.is_file():
                problems.append(f"{name} is not a regular file")
        for artifact in self.manifest.referenced_files():
            folder = self.path / artifact
            if folder.is_dir() and not folder.is_symlink():
                inside = sorted(p.relative_to(self.path).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())
                unlisted = [name for name in inside if name not in self.manifest.files]
                if unlisted:
                    problems.append(f"{unlisted[0]} is inside {artifact} but not listed in the manifest")
        return problems

    def hash_problems(self) -> list[str]:
        """Problems with the bundle's files: missing, or content not matching the manifest."""
        problems = []
        for name, expected in self.manifest.files.items():
            path = self.path / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif file_sha256(path) != expected:
                problems.append(f"{name} does not match its sha256 in the manifest")
        return problems


def read_manifest(path: Path) -> Manifest:
    """The bundle's manifest, after its own digest: manifest.sha256 must hold the sha256 of manifest.json."""
    manifest_path, digest_path = path / MANIFEST, path / MANIFEST_DIGEST
    for file in (manifest_path, digest_path):
        if file.is_symlink() or file.exists() and not file.is_file():
            raise EdgeError(f"{file}: must be a regular file inside the bundle")
    if not manifest_path.is_file():
        raise EdgeError(f"{path}: not a bundle (no {MANIFEST})")
    if not digest_path.is_file():
        raise EdgeError(f"{path}: no {MANIFEST_DIGEST} (bundles from edge before 2026-12-04: compile it again)")
    manifest_bytes = manifest_path.read_bytes()
    expected = digest_path.read_bytes().split(b" ", 1)[0].decode("ascii", "replace")
    if manifest_sha256(manifest_bytes) != expected:
        raise EdgeError(f"{manifest_path}: does not match {MANIFEST_DIGEST} (damaged or edited; restore or recompile)")
    return Manifest.from_json(parse_json(manifest_bytes, manifest_path), str(manifest_path))


def open_bundle(path: Path, check_hashes: bool = True) -> Bundle:
    """The bundle at `path`: manifest digest and schema, containment and (unless asked not to) every file's hash."""
    path = Path(path)
    if not path.is_dir():
        raise EdgeError(f"{path}: not a bundle folder")
    bundle = Bundle(path, read_manifest(path))
    escaping = bundle.containment_problems()  # before any file is read: never hash or load through a symlink out
    if escaping:
        raise EdgeError(f"{path}: {escaping[0]}")
    problems = bundle.hash_problems() if check_hashes else []
    if problems:
        raise EdgeError(f"{path}: {problems[0]} (run edge verify)")
    return bundle
