"""Session fixtures: the Moebius facts (tests/fixtures/moebius), the tiny models, and every bundle compiled once.

Helpers that tests call (rather than fixtures pytest injects) live in tests/helpers.py.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import CheckRun, facts_file, quant_modes, run_check_cli


@pytest.fixture(scope="session", autouse=True)
def throwaway_cache(tmp_path_factory):
    """Calibration recordings of the test session go to a temporary cache, not the user's."""
    os.environ["EDGE_CACHE"] = str(tmp_path_factory.mktemp("edge-cache"))


for noisy in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    logging.getLogger(noisy).setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def parity_file() -> Path:
    return facts_file("tiny_parity.safetensors")


@pytest.fixture(scope="session")
def pipeline_file() -> Path:
    return facts_file("tiny_pipeline.safetensors")


@pytest.fixture(scope="session")
def parity_case(parity_file):
    return load_file(parity_file)


@pytest.fixture(scope="session")
def pipeline_case(pipeline_file):
    return load_file(pipeline_file)


@pytest.fixture(scope="session")
def tiny_unet(parity_file):
    from edge.models import load_unet

    return load_unet("moebius-tiny", parity_file)


@pytest.fixture(scope="session")
def tiny_vae(pipeline_file):
    from edge.models import load_vae

    return load_vae("moebius-tiny", pipeline_file)


# fixtures whose tests compile bundles or run whole pipelines: marked slow (`make test-fast` skips them)
SLOW_FIXTURES = {"compiled", "tiny_bundles", "tiny_checks", "tiny_int8_copy", "native_runner", "tflite_bundles",
                 "tflite_checks", "coreml_bundles", "coreml_checks", "vulkan_bundle", "tiny_sensitivity"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


class CompiledBundles:
    """compiled(target, quant, options=()) -> the moebius-tiny bundle, compiled by `edge compile --json` once per
    session whoever asks first (the contract test and each backend's own tests share them); summary(...) is
    that command's JSON result."""

    def __init__(self, folder: Path, weights: Path, vae: Path):
        self.folder, self.weights, self.vae = folder, weights, vae
        self.summaries: dict[tuple, dict] = {}

    def __call__(self, target: str, quant: str, options: tuple[tuple[str, str], ...] = ()) -> Path:
        return Path(self.summary(target, quant, options)["bundle"])

    def summary(self, target: str, quant: str, options: tuple[tuple[str, str], ...] = ()) -> dict:
        from typer.testing import CliRunner

        from edge.cli import app

        key = (target, quant, options)
        if key not in self.summaries:
            out = self.folder / "-".join([target, quant, *(f"{k}{v}" for k, v in options)])
            flags = [f"--{k}={v}" for k, v in options]
            result = CliRunner().invoke(app, ["compile", "--target", target, "--quant", quant, "--model", "moebius-tiny",
                                              "--weights", str(self.weights), "--vae", str(self.vae), "-o", str(out),
                                              "--json", *flags])
            assert result.exit_code == 0, result.output
            self.summaries[key] = json.loads(result.stdout)
        return self.summaries[key]


@pytest.fixture(scope="session")
def compiled(tmp_path_factory, parity_file, pipeline_file) -> CompiledBundles:
    return CompiledBundles(tmp_path_factory.mktemp("bundles"), parity_file, pipeline_file)


@pytest.fixture(scope="session")
def tiny_bundles(compiled):
    """moebius-tiny compiled to every XNNPACK quant mode."""
    return {mode: compiled("xnnpack", mode) for mode in quant_modes("xnnpack")}


@pytest.fixture(scope="module")
def tiny_int8_copy(tiny_bundles, tmp_path_factory) -> Path:
    """A private copy of the tiny int8 XNNPACK bundle per test module (profiling writes into the bundle folder)."""
    import shutil

    copy = tmp_path_factory.mktemp("int8-copy") / "tiny-int8"
    shutil.copytree(tiny_bundles["int8"], copy)
    return copy


@pytest.fixture(scope="session")
def native_runner() -> Path:
    """The native runner (android_demo/runner), built once per session into the throwaway EDGE_CACHE."""
    from edge.device.native import build_runner

    return build_runner()


@pytest.fixture(scope="session")
def lpips_folder(tmp_path_factory) -> Path:
    """Seeded random LPIPS weights in the layout of the published files (torchvision AlexNet + lpips alex.pth)."""
    import torch

    from edge.quality.lpips import ALEXNET_CONVS

    folder = tmp_path_factory.mktemp("lpips")
    generator = torch.Generator().manual_seed(0)
    features, heads = {}, {}
    for k, (index, cin, cout, kernel, _, _) in enumerate(ALEXNET_CONVS):
        features[f"features.{index}.weight"] = torch.randn(cout, cin, kernel, kernel, generator=generator) * 0.05
        features[f"features.{index}.bias"] = torch.zeros(cout)
        heads[f"lin{k}.model.1.weight"] = torch.rand(1, cout, 1, 1, generator=generator)
    torch.save(features, folder / "alexnet-owt-7be5be79.pth")
    torch.save(heads, folder / "alex.pth")
    return folder


@pytest.fixture(scope="session")
def tiny_checks(tiny_bundles, tmp_path_factory, lpips_folder) -> dict[str, CheckRun]:
    """`edge check --json` run once on each tiny bundle (LPIPS with the random weights above)."""
    folder = tmp_path_factory.mktemp("checks")
    return {mode: run_check_cli(path, folder / f"{mode}.html", "--lpips-weights", str(lpips_folder))
            for mode, path in tiny_bundles.items()}
