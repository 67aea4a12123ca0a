"""Shared fixtures: the facts in ../shared/moebius (parity and pipeline cases for moebius-tiny)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
SHARED_MOEBIUS = Path(os.environ.get("EDGE_MOEBIUS_FACTS", REPO.parent / "shared" / "moebius"))


@pytest.fixture(scope="session", autouse=True)
def throwaway_cache(tmp_path_factory):
    """Calibration recordings of the test session go to a temporary cache, not the user's."""
    os.environ["EDGE_CACHE"] = str(tmp_path_factory.mktemp("edge-cache"))

for noisy in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    logging.getLogger(noisy).setLevel(logging.ERROR)


def facts_file(name: str) -> Path:
    path = SHARED_MOEBIUS / name
    if not path.is_file():
        pytest.fail(f"missing fixture {path}: the Moebius facts folder must sit at ../shared/moebius")
    return path


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


XNNPACK_MODES = ("fp32", "int8", "int8-dynamic")


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory, parity_file, pipeline_file):
    """moebius-tiny compiled once per session to every XNNPACK quant mode (lowering takes minutes)."""
    from edge.compile import CompileRequest, compile_bundle

    folder = tmp_path_factory.mktemp("bundles")
    return {mode: compile_bundle(CompileRequest("moebius-tiny", "xnnpack", mode, folder / mode, parity_file, pipeline_file))
            for mode in XNNPACK_MODES}


def inpaint_against_torch(bundle, tiny_unet, tiny_vae, pipeline_case):
    """The bundle's inpaint of the pipeline case (its own sampling plan), and the max abs difference of its
    image in [0, 1] from the torch pipeline's with the same inputs and start noise."""
    from edge.bundle import BundleGraphs
    from edge.graphs import build_graphs
    from edge.models import get_preset
    from edge.pipeline import TorchGraphs, inpaint_tensors

    plan = bundle.sampling_plan()
    args = (pipeline_case["input.image"], pipeline_case["input.mask"], pipeline_case["input.noise"])
    reference = inpaint_tensors(TorchGraphs(build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae)), plan, *args)
    compiled = inpaint_tensors(BundleGraphs(bundle), plan, *args)
    return compiled, (compiled.image01 - reference.image01).abs().max().item()


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
    from edge.runner import build_runner

    return build_runner()


@pytest.fixture(scope="session")
def lpips_folder(tmp_path_factory) -> Path:
    """Seeded random LPIPS weights in the layout of the published files (torchvision AlexNet + lpips alex.pth)."""
    import torch

    from edge.lpips import ALEXNET_CONVS

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


@dataclass
class CheckRun:
    exit_code: int
    payload: dict
    report: Path


def run_check_cli(bundle: Path, report: Path, *extra: str) -> CheckRun:
    from typer.testing import CliRunner

    from edge.cli import app

    result = CliRunner().invoke(app, ["check", str(bundle), "--report", str(report), "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    return CheckRun(result.exit_code, json.loads(result.stdout), report)


@pytest.fixture(scope="session")
def tiny_checks(tiny_bundles, tmp_path_factory, lpips_folder) -> dict[str, CheckRun]:
    """`edge check --json` run once on each tiny bundle (LPIPS with the random weights above)."""
    folder = tmp_path_factory.mktemp("checks")
    return {mode: run_check_cli(path, folder / f"{mode}.html", "--lpips-weights", str(lpips_folder))
            for mode, path in tiny_bundles.items()}
