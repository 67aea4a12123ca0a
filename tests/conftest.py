"""Shared fixtures: the facts in ../shared/moebius (parity and pipeline cases for moebius-tiny)."""

from __future__ import annotations

import logging
import os
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
