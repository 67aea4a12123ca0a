"""Opening a bundle: manifest.json read and validated (edge.bundle.manifest), every listed file's hash
checked, and what the loop needs from it (the sampling plan, the golden cases)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from edge.backends.contract import Backend
from edge.bundle.manifest import MANIFEST, Manifest
from edge.errors import EdgeError
from edge.files import read_json
from edge.models.weights import file_sha256
from edge.pipeline.loop import SamplingPlan
from edge.targets import load_target


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
        return profile.backend

    def graph_file(self, name: str) -> Path:
        return self.path / self.manifest.graphs[name].file

    def sampling_plan(self) -> SamplingPlan:
        sampling = self.manifest.sampling
        features = sampling.time_features
        table = np.fromfile(self.path / features.file, dtype="<f4")
        if table.size != features.shape[0] * features.shape[1]:
            raise EdgeError(f"{self.path / features.file}: {table.size} values, the manifest says {features.shape}")
        return SamplingPlan(sampling.scheduler, sampling.guidance, torch.from_numpy(table.reshape(features.shape).copy()))

    def golden_case(self, graph: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
        """(inputs, output the program gave at compile time, fp32 torch reference output)."""
        golden = load_file(self.path / self.manifest.golden)
        count = sum(1 for key in golden if key.startswith(f"{graph}.input."))
        inputs = tuple(golden[f"{graph}.input.{j}"] for j in range(count))
        return inputs, golden[f"{graph}.output"], golden[f"{graph}.reference"]

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


def open_bundle(path: Path, check_hashes: bool = True) -> Bundle:
    """The bundle at `path`, its manifest validated and (unless asked not to) every file's hash checked."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise EdgeError(f"{path}: not a bundle (no {MANIFEST})")
    bundle = Bundle(path, Manifest.from_json(read_json(manifest_path), str(manifest_path)))
    problems = bundle.hash_problems() if check_hashes else []
    if problems:
        raise EdgeError(f"{path}: {problems[0]} (run edge verify)")
    return bundle
