"""`edge check --ray` (edge.cluster) on an embedded two-worker Ray: the serial run's numbers to the last digit, a
worker killed mid-run retried, bad addresses refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edge.cli import app
from edge.cluster.check import run_check_on_ray
from edge.cluster.session import LOCAL, ray_session
from edge.quality.check import CheckRequest, CheckResult, plan_check, run_check
from tests.helpers import REPO

# four pairs of both folders (photographs of different sizes): two for each of the two Ray workers
FOUR_PAIRS = [("eval_data", "flower"), ("eval_data", "monarch"), ("calib_data", "astronaut"), ("calib_data", "coffee")]


@pytest.fixture(scope="module")
def four_pairs(tmp_path_factory) -> Path:
    """Four held-out photographs with their masks, in one folder the workers read from."""
    folder = tmp_path_factory.mktemp("four-pairs")
    for part in ("images", "masks"):
        (folder / part).mkdir()
    for source, name in FOUR_PAIRS:
        image = next((REPO / source / "images").glob(f"{name}.*"))
        shutil.copy(image, folder / "images" / image.name)
        shutil.copy(REPO / source / "masks" / f"{name}.png", folder / "masks" / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def serial(compiled, four_pairs) -> tuple[CheckRequest, CheckResult]:
    """The serial check of the tiny int8 bundle on the four pairs, with torch on one thread as each Ray task."""
    request = CheckRequest(compiled("xnnpack", "int8"), four_pairs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return request, run_check(plan_check(request))
    finally:
        torch.set_num_threads(threads)


def numbers(result: CheckResult) -> dict:
    """Every number a check reports, at full precision, and its pictures' pixels."""
    return {"graphs": result.graphs, "unet_steps": result.unet_steps, "metrics": result.metrics,
            "gates": [gate.to_json() for gate in result.gates], "ground_truth": result.ground_truth,
            "pairs": [(p.name, p.metrics, p.reference.tobytes(), p.result.tobytes()) for p in result.pairs]}


def edge_worker_pids(running_only: bool = False) -> set[int]:
    """Processes of edge's Ray actors (Ray titles them ray::EdgeWorker, ray::EdgeWorker.call while they work)."""
    title = b"ray::EdgeWorker.call" if running_only else b"ray::EdgeWorker"
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(title):
                pids.add(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return pids


def test_sharded_check_gives_the_serial_numbers_to_the_last_digit(serial):
    request, expected = serial
    progress = []
    with ray_session(LOCAL, threads=1, cpus=2) as session:
        assert session.slots == 2
        result = run_check_on_ray(request, plan_check(request), session, lambda done, total: progress.append((done, total)))
    assert len(expected.pairs) == 4 and expected.graphs["unet"]["samples"] == 4 * 19
    assert numbers(result) == numbers(expected)
    assert progress == [(done, 4) for done in range(1, 5)]


def test_a_worker_killed_mid_run_is_retried_and_the_result_is_complete(serial, tmp_path):
    """`edge check --ray --json` in its own process; one of its workers killed by pid while it measures a pair."""
    request, expected = serial
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "from edge.cli import main; main()", "check", str(request.bundle), "--eval", str(request.eval_dir),
               "--ray", "--json", "--report", str(tmp_path / "report.html")]
    check = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        victim = None
        while victim is None and check.poll() is None:
            busy = edge_worker_pids(running_only=True)
            victim = min(busy) if busy else time.sleep(0.2)
        assert victim is not None, "the check ended before any worker measured a pair"
        os.kill(victim, signal.SIGKILL)
        replaced = set()
        while check.poll() is None:
            replaced |= edge_worker_pids() - {victim}
            time.sleep(0.2)
        stdout, stderr = check.communicate()
    finally:
        check.kill()
    assert check.returncode == 0, stderr.decode()[-2000:]
    payload = json.loads(stdout)
    assert len(replaced) >= 2  # the other worker and the victim's replacement
    drop = ("schema", "command", "report")
    assert {k: v for k, v in payload.items() if k not in drop} == json.loads(json.dumps(expected.to_json()))


def test_bad_addresses_are_one_error_line(serial):
    request, _ = serial
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        for address, problem in (("nonsense", "not a Ray address"), (f"127.0.0.1:{port}", "no Ray cluster answers there")):
            result = CliRunner().invoke(app, ["check", str(request.bundle), "--ray-address", address])
            assert result.exit_code == 2, result.output
            assert result.stderr.startswith(f"error: --ray-address {address}: {problem}") and result.stderr.count("\n") == 1
