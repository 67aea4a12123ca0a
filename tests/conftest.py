"""Session fixtures: the Moebius facts (tests/fixtures/moebius), the tiny models (the published code's random
parity weights, and moebius-tiny-trained's shipped weights), and every bundle compiled once.

Helpers that tests call (rather than fixtures pytest injects) live in tests/helpers.py.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file
from xdist.scheduler import LoadScopeScheduling

from tests.helpers import PARENT_CACHE, CheckRun, facts_file, quant_modes, run_check_cli

XDIST_WORKER = "PYTEST_XDIST_WORKER"  # set in each xdist worker's environment
TRAINED = "moebius-tiny-trained"  # what the bundles are compiled from: the gates are about trained weights


@pytest.fixture(scope="session", autouse=True)
def throwaway_cache(tmp_path_factory):
    """What edge caches (calibration recordings, conversions, the native runner) goes to a temporary cache of
    the session, not the user's; xdist workers share it (edge writes its cache entries atomically), and so does a
    sub-session a test starts with PARENT_CACHE set (its calibration recordings are the parent's)."""
    os.environ["EDGE_CACHE"] = os.environ.get(PARENT_CACHE) or str(session_folder(tmp_path_factory, "edge-cache"))


def session_folder(tmp_path_factory, name: str) -> Path:
    """A folder of the test session, the same for every xdist worker (their temp folders share a parent)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if XDIST_WORKER in os.environ else base) / name
    folder.mkdir(exist_ok=True)
    return folder


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
def trained_unet():
    from edge.models import load_unet

    return load_unet(TRAINED)


@pytest.fixture(scope="session")
def trained_vae():
    from edge.models import load_vae

    return load_vae(TRAINED)


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
                 "tflite_checks", "tflite_sensitivity", "coreml_bundles", "coreml_checks", "vulkan_bundle"}

# `make test` runs the suite on two xdist workers. A group of tests runs whole on one worker: the test files of
# one target's bundles (and the contract test's cases of that target) together, every other file by itself (its
# module fixtures run once). Groups start longest first, so that the two workers finish together. Bundles are
# compiled once across workers anyway (CompiledBundles): the groups only keep a worker from waiting on the other.
FILE_GROUPS = {"tests/test_adb.py": "xnnpack", "tests/test_android_core.py": "xnnpack",
               "tests/test_android_push.py": "xnnpack", "tests/test_check.py": "xnnpack", "tests/test_compile.py": "xnnpack",
               "tests/test_profile.py": "xnnpack", "tests/test_vulkan.py": "vulkan", "tests/test_coreml.py": "coreml",
               "tests/test_tflite.py": "tflite", "tests/test_web.py": "web", "tests/test_web_demo.py": "web"}
CONTRACT_CASES = "tests/test_contract.py::test_bundle_keeps_the_contract["
# contract cases whose bundle no test file of the target uses run as groups of their own, and so do the
# XNNPACK int8-dynamic and int4 cases: the xnnpack group's chain of compiles is the longest, the other worker
# compiles those bundles meanwhile
OWN_GROUP_CASES = ("xnnpack-int8-dynamic", "xnnpack-int4", "vulkan-fp32", "coreml-fp32")
GROUP_ORDER = ("xnnpack", "xnnpack-int8-dynamic", "xnnpack-int4", "web", "vulkan", "vulkan-fp32", "coreml", "coreml-fp32", "tflite")


def group_of(nodeid: str) -> str:
    if nodeid.startswith(CONTRACT_CASES):
        case = nodeid.removeprefix(CONTRACT_CASES).removesuffix("]")  # target-quant
        return case if case in OWN_GROUP_CASES else case.split("-")[0]
    path = nodeid.split("::")[0]
    return FILE_GROUPS.get(path, path)


class BundleGroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with group_of as the scope (pytest 9 ids cannot carry xdist_group marks)."""

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the suite also runs without xdist (-p no:xdist)
def pytest_xdist_make_scheduler(config, log):
    return BundleGroupScheduling(config, log)


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {group: index for index, group in enumerate(GROUP_ORDER)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable: file order within a rank


@pytest.fixture(scope="session", autouse=True)
def cores_per_worker():
    """Under xdist, each worker's torch takes its share of the cores (two workers each with every core thrash)."""
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if XDIST_WORKER in os.environ and workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


class CompiledBundles:
    """compiled(target, quant) -> the moebius-tiny-trained bundle, compiled by `edge compile --json` once per
    session whoever asks first (the contract test and each backend's own tests share them, and so do xdist
    workers: the folder is theirs in common and each bundle is compiled under a file lock); summary(...) is that
    command's JSON result."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __call__(self, target: str, quant: str) -> Path:
        return Path(self.summary(target, quant)["bundle"])

    def summary(self, target: str, quant: str) -> dict:
        from filelock import FileLock
        from typer.testing import CliRunner

        from edge.cli import app

        out = self.folder / f"{target}-{quant}"
        result_file = out.with_suffix(".json")
        with FileLock(out.with_suffix(".lock")):
            if not result_file.is_file():
                result = CliRunner().invoke(app, ["compile", "--target", target, "--quant", quant, "--model", TRAINED,
                                                  "-o", str(out), "--json"])
                assert result.exit_code == 0, result.output
                result_file.write_text(result.stdout)
            return json.loads(result_file.read_text())


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> CompiledBundles:
    return CompiledBundles(session_folder(tmp_path_factory, "bundles"))


@pytest.fixture(scope="session")
def tiny_bundles(compiled):
    """moebius-tiny-trained compiled to every XNNPACK quant mode."""
    return {mode: compiled("xnnpack", mode) for mode in quant_modes("xnnpack")}


@pytest.fixture(scope="module")
def tiny_int8_copy(compiled, tmp_path_factory) -> Path:
    """A private copy of the tiny int8 XNNPACK bundle per test module (profiling writes into the bundle folder).

    It asks for the int8 bundle alone, so that the xnnpack group compiles it first: the int4 bundle, compiled
    meanwhile on the other worker, then finds the int8 encoder and decoder lowered in the shared cache."""
    import shutil

    copy = tmp_path_factory.mktemp("int8-copy") / "tiny-int8"
    shutil.copytree(compiled("xnnpack", "int8"), copy)
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


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup, call and teardown together; a session fixture counts where it is first
    used): where the suite's time goes, for keeping `make test` under 30 minutes."""
    seconds: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if hasattr(report, "duration") and hasattr(report, "nodeid"):
                path = report.nodeid.split("::")[0]
                seconds[path] = seconds.get(path, 0.0) + report.duration
    if seconds:
        terminalreporter.write_sep("=", "seconds per test file")
        for path, total in sorted(seconds.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{total:8.1f}  {path}")
