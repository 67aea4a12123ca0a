"""`edge compile` refuses bad input with one line, a non-zero exit, and nothing half-written."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from edge.bundle.writer import BundleWriter
from edge.cli import app
from edge.compile.stages import CompileRequest, compile_bundle
from edge.errors import EdgeError
from edge.targets import load_target
from tests.helpers import REPO

runner = CliRunner()


def calib_folder(tmp_path, case):
    folder = tmp_path / "calib"
    (folder / "images").mkdir(parents=True)
    if case == "calib_unreadable":
        (folder / "images" / "broken.png").write_text("not a picture")
    if case == "calib_mask_size":
        Image.open(REPO / "calib_data" / "images" / "chelsea.png").save(folder / "images" / "cat.png")
        (folder / "masks").mkdir()
        Image.new("L", (10, 10), 255).save(folder / "masks" / "cat.png")
    return folder


@pytest.mark.parametrize("case, expected", [
    ("unknown_target", "unknown target 'phone': choose one of"),
    ("unknown_quant", "target xnnpack has no quant mode 'fp16': choose one of fp32, int8, int8-dynamic, int4"),
    ("calib_missing", "calib-nowhere: no such calibration folder"),
    ("calib_empty", "calib: no images"),
    ("calib_unreadable", "broken.png: not a readable image"),
    ("calib_mask_size", "cat.png: mask is 10x10 but the image is 451x300"),
    ("out_exists", "already exists (pass --force to replace it)"),
    ("force_over_a_folder_that_is_not_a_bundle", "not an edge bundle (no manifest.json and manifest.sha256); --force "
                                                 "replaces only bundles"),
    ("out_parent_missing", "does not exist"),
])
def test_bad_input(tmp_path, case, expected):
    out = tmp_path / "bundle"
    args = ["compile", "--target", "xnnpack", "--quant", "fp32", "--model", "moebius-tiny", "-o", str(out)]
    if case == "unknown_target":
        args[2] = "phone"
    elif case == "unknown_quant":
        args[4] = "fp16"
    elif case == "calib_missing":
        args += ["--calib", str(tmp_path / "calib-nowhere")]
    elif case.startswith("calib_"):
        args += ["--calib", str(calib_folder(tmp_path, case))]
    elif case in ("out_exists", "force_over_a_folder_that_is_not_a_bundle"):
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        args += ["--force"] if case.startswith("force") else []
    else:
        args[-1] = str(tmp_path / "no-such-folder" / "bundle")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]
    assert not leftovers
    if case in ("out_exists", "force_over_a_folder_that_is_not_a_bundle"):
        assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    elif case != "out_parent_missing":
        assert not out.exists()


def test_disk_full_leaves_nothing(tmp_path, monkeypatch, parity_file, pipeline_file):
    def full_disk(self, name, payload):
        self.abort()
        raise EdgeError(f"{self.out}: could not write {name} ({errno.errorcode[errno.ENOSPC]})")

    monkeypatch.setattr(BundleWriter, "write", full_disk)
    out = tmp_path / "bundle"
    with pytest.raises(EdgeError, match="could not write encoder.pte"):
        compile_bundle(CompileRequest("moebius-tiny", "xnnpack", "fp32", out, parity_file, pipeline_file))
    assert list(tmp_path.iterdir()) == []


def test_write_failure_becomes_one_error(tmp_path, monkeypatch):
    writer = BundleWriter(tmp_path / "bundle", force=False)

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", no_space)
    with pytest.raises(EdgeError, match="could not write unet.pte \\(No space left on device\\)"):
        writer.write("unet.pte", b"payload")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("body, expected", [
    ('default_quant = "fp32"\n[graphs]\nunet_batch = 1\n', "unet_batch 1 is not supported"),
    ('default_quant = "int2"\n', "unknown quant mode"),
    ('default_quant = "fp32"\n[gates.int2]\nunet_sqnr_db = 1\n', "unknown quant mode"),
    ('default_quant = "fp32"\n[[', "not a valid target profile"),
])
def test_bad_target_profile_is_one_error(tmp_path, monkeypatch, body, expected):
    header = 'name = "odd"\nbackend = "xnnpack"\ndescription = "x"\nartifact = ".pte"\nruns_here = true\n'
    (tmp_path / "odd.toml").write_text(header + body)
    monkeypatch.setenv("EDGE_TARGETS_DIR", str(tmp_path))
    with pytest.raises(EdgeError, match=f"odd.toml: {expected}"):
        load_target("odd")


def test_staging_folders_of_dead_processes_are_removed(tmp_path):
    """A compile killed with SIGKILL cannot clean up: the next compile into the same place does, and leaves a
    running compile's staging folder alone."""
    dead = _dead_pid()
    stale = tmp_path / f".bundle.staging-{dead}-abcd"
    running = tmp_path / f".bundle.staging-{os.getpid()}-efgh"
    for folder in (stale, running):
        folder.mkdir()
        (folder / "unet.pte").write_bytes(b"half")
    writer = BundleWriter(tmp_path / "bundle", force=False)
    assert not stale.exists() and running.exists()
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_sigterm_during_compile_leaves_nothing(tmp_path):
    """SIGTERM (a CI timeout, a container stop) unwinds like Ctrl-C: the staging folder is removed."""
    out = tmp_path / "bundle"
    command = [sys.executable, "-c", "from edge.cli import main; main()", "compile", "--target", "xnnpack",
               "--quant", "fp32", "--model", "moebius-tiny-trained", "-o", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".bundle.staging-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".bundle.staging-*")), process.stderr.read() if process.poll() is not None else "timeout"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
