"""edge profile --device local on the tiny int8 XNNPACK bundle, with the native runner built against the wheel."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from edge.bundle.bundle import open_bundle
from edge.cli import app
from edge.compile.graphs import GRAPH_NAMES
from edge.device.measure import Settings, summarize
from edge.device.native import RunnerProgram, parse_held_line, parse_runner_line, runner_arguments, write_inputs
from edge.errors import EdgeError
from tests.helpers import manifest_json, rewrite_manifest


@pytest.fixture(scope="module")
def local_profile(tiny_int8_copy, native_runner):
    result = CliRunner().invoke(app, ["profile", str(tiny_int8_copy), "--runs", "3", "--warmup", "1", "--cooldown", "0",
                                      "--threads", "2", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_summary_statistics():
    summary = summarize([5.0, 1.0, 4.0, 2.0, 3.0, 100.0, 3.0, 2.0, 4.0, 3.0])
    assert (summary["median_ms"], summary["min_ms"], summary["max_ms"]) == (3.0, 1.0, 100.0)
    assert summary["p90_ms"] == 5.0  # nearest rank: the 9th of 10 sorted
    assert summary["trimmed_mean_ms"] == pytest.approx((2 + 2 + 3 + 3 + 3 + 4 + 4 + 5) / 8)  # min and max dropped
    assert summary["cv"] > 1.0  # one outlier of 100 dominates the spread
    assert summarize([2.0, 2.0])["cv"] == 0.0


def test_local_profile_times_every_graph_and_the_inpaint(local_profile, tiny_int8_copy):
    manifest = manifest_json(tiny_int8_copy)
    assert local_profile["device"]["kind"] == "local" and local_profile["settings"]["threads"] == 2
    for name, graph in local_profile["graphs"].items():
        assert graph["runs"] == 3 and len(graph["samples_ms"]) == 3
        assert graph["min_ms"] <= graph["median_ms"] <= graph["p90_ms"] <= graph["max_ms"]
        assert graph["load_ms"] > 0 and graph["peak_rss_mb"] >= graph["rss_before_mb"] > 0
        assert graph["file"] == manifest["graphs"][name]["file"]
    inpaint = local_profile["inpaint"]
    steps = manifest["sampling"]["steps"]
    assert inpaint["steps"] == steps
    assert inpaint["graph_calls"] == {"encoder": 2, "unet": steps, "decoder": 1}
    assert sum(inpaint["graph_ms"].values()) <= inpaint["median_ms"]  # the loop's own work comes on top


def test_local_profile_ranks_ops_inside_the_xnnpack_delegate(local_profile):
    for name, ops in local_profile["ops"].items():
        top = ops["top"]
        assert 0 < len(top) <= 15
        assert [op["ms_per_run"] for op in top] == sorted((op["ms_per_run"] for op in top), reverse=True)
        assert sum(op["share"] for op in top) <= 1.0001
        assert top[0]["delegated"], f"{name}: the delegate's own ops should lead"
        assert ops["ops_ms"] <= ops["execute_ms"] * 1.05
    unet_ops = {op["op"] for op in local_profile["ops"]["unet"]["top"]}
    assert any("QC8" in op for op in unet_ops), unet_ops  # int8 convolutions / GEMMs, by XNNPACK's names


def test_native_runner_matches_the_python_runtime(local_profile):
    native = local_profile["native"]["graphs"]
    assert set(native) == set(local_profile["graphs"])
    for name, graph in native.items():
        assert graph["runs"] == 3 and graph["threads"] == 2
        assert graph["max_abs_vs_golden"] <= 1e-4, name  # same program, same kernels: the compile-time output
        # its own peak (VmHWM), not the Python parent's that getrusage carries across exec
        assert 0 < graph["peak_rss_mb"] < local_profile["graphs"][name]["rss_before_mb"], name
        ratio = local_profile["native_vs_python"][name]
        assert math.isfinite(ratio) and ratio > 0


def test_native_runner_holds_every_program_at_once(local_profile, tiny_int8_copy):
    held, memory = local_profile["native"]["held"], local_profile["native"]["memory"]
    alone = local_profile["native"]["graphs"]
    assert set(held["graphs"]) == set(alone) and held["workspace"] == "shared"
    for name, graph in held["graphs"].items():
        assert graph["max_abs_vs_golden"] <= 1e-4, name  # the three programs in one process still compute the same
    # holding all three costs at least the largest one alone, and running them costs more than loading them
    assert memory["held_peak_rss_mb"] >= memory["one_at_a_time_peak_rss_mb"] == max(g["peak_rss_mb"] for g in alone.values())
    assert 0 < memory["loaded_rss_mb"] < memory["held_peak_rss_mb"]
    programs_bytes = sum(open_bundle(tiny_int8_copy).graph_file(name).stat().st_size for name in alone)
    assert memory["programs_mb"] == pytest.approx(programs_bytes / 2**20, abs=0.05)


def test_a_shared_xnnpack_workspace_takes_less_memory_than_one_per_program(tiny_int8_copy, native_runner, tmp_path):
    loaded = open_bundle(tiny_int8_copy)
    programs = [RunnerProgram(str(loaded.graph_file(name)), [(str(path), shape) for path, shape in
                                                            write_inputs(loaded, name, tmp_path)])
                for name in GRAPH_NAMES]
    peaks = {}
    for workspace in ("shared", "separate"):
        done = subprocess.run([str(native_runner), *runner_arguments(programs, Settings(1, 1), workspace=workspace)],
                              capture_output=True, text=True, timeout=120)
        held = parse_held_line(done.stdout, workspace, GRAPH_NAMES)
        assert held["workspace"] == workspace
        peaks[workspace] = held["peak_rss_mb"]
    # measured 40.5 vs 47.6 MB: the encoder's and decoder's activations at 128 px share one buffer
    assert peaks["shared"] + 3 < peaks["separate"], peaks


def test_runner_options_are_checked(native_runner):
    for arguments, message in ((["--input", "x.f32:1"], "--input before any --model"),
                               (["--model", "a.pte", "--input", "x.f32:1", "--workspace", "pooled"], "expected shared or separate"),
                               (["--model", "a.pte", "--input", "x:1", "--model", "b.pte", "--input", "y:1", "--etdump", "e"],
                                "--etdump records one program")):
        done = subprocess.run([str(native_runner), *arguments], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        with pytest.raises(EdgeError, match=message):
            parse_runner_line(done.stdout, "runner")


def test_profile_is_saved_outside_the_manifest_and_verify_still_passes(local_profile, tiny_int8_copy):
    saved = sorted((tiny_int8_copy / "profiles").glob("*-local.json"))
    assert saved and json.loads(saved[-1].read_text())["graphs"] == local_profile["graphs"]
    verify = CliRunner().invoke(app, ["verify", str(tiny_int8_copy), "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.stdout)["hashes_ok"]


def test_runner_etdump_counts_the_same_ops_as_python(tiny_int8_copy, native_runner, local_profile, tmp_path):
    from edge.device.etdump import op_breakdown

    loaded = open_bundle(tiny_int8_copy)
    inputs = [(str(path), shape) for path, shape in write_inputs(loaded, "unet", tmp_path)]
    arguments = runner_arguments([RunnerProgram(str(loaded.graph_file("unet")), inputs)], Settings(runs=2, warmup=1),
                                 etdump=str(tmp_path / "unet.etdp"))
    done = subprocess.run([str(native_runner), *arguments], capture_output=True, text=True, timeout=120)
    parse_runner_line(done.stdout, "runner")
    native_ops = op_breakdown(tmp_path / "unet.etdp")
    assert native_ops["runs"] == 3  # warm-up + timed runs all recorded
    python_calls = {op["op"]: op["calls_per_run"] for op in local_profile["ops"]["unet"]["top"]}
    native_calls = {op["op"]: op["calls_per_run"] for op in native_ops["top"]}
    shared = python_calls.keys() & native_calls.keys()
    assert len(shared) >= 10
    assert all(python_calls[op] == native_calls[op] for op in shared)


def test_runner_reports_bad_input_as_one_error(tiny_int8_copy, native_runner, tmp_path):
    loaded = open_bundle(tiny_int8_copy)
    (path, shape), *_ = write_inputs(loaded, "unet", tmp_path)
    wrong = [RunnerProgram(str(loaded.graph_file("unet")), [(str(path), [shape[0] * 2, *shape[1:]])])]
    done = subprocess.run([str(native_runner), *runner_arguments(wrong, Settings(1, 1))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    with pytest.raises(EdgeError, match="bytes, shape needs"):
        parse_runner_line(done.stdout, "runner")


def test_android_build_names_what_is_missing(monkeypatch, tmp_path):
    for variable in ("ANDROID_NDK_HOME", "ANDROID_NDK_ROOT", "ANDROID_NDK", "EXECUTORCH_ANDROID_PREFIX"):
        monkeypatch.delenv(variable, raising=False)
    result = CliRunner().invoke(app, ["runner", "build", "--abi", "arm64-v8a"])
    assert result.exit_code == 2
    assert "ANDROID_NDK_HOME" in result.output and "EXECUTORCH_ANDROID_PREFIX" in result.output
    toolchain = tmp_path / "ndk" / "build" / "cmake" / "android.toolchain.cmake"
    toolchain.parent.mkdir(parents=True)
    toolchain.write_text("")
    monkeypatch.setenv("ANDROID_NDK_HOME", str(tmp_path / "ndk"))
    result = CliRunner().invoke(app, ["runner", "build", "--abi", "arm64-v8a"])
    assert result.exit_code == 2
    assert "NDK" not in result.output.split("missing", 1)[1] and "EXECUTORCH_ANDROID_PREFIX" in result.output


def test_profile_rejects_an_unknown_device(tiny_int8_copy):
    result = CliRunner().invoke(app, ["profile", str(tiny_int8_copy), "--device", "usb"])
    assert result.exit_code == 2 and "--device usb" in result.output


def test_emulated_backends_results_are_marked_as_not_a_device_speed(tiny_int8_copy, tmp_path):
    """A bundle whose backend runs here in an emulator (Core ML's manifests name edge's MIL interpreter in
    tools.runs_here_with) is profiled like any other, its numbers flagged as not a device speed."""
    from edge.device.profile import LocalRequest, profile_local

    copy = tmp_path / "emulated"
    shutil.copytree(tiny_int8_copy, copy, ignore=shutil.ignore_patterns("profiles"))
    rewrite_manifest(copy, lambda manifest: manifest["tools"].__setitem__("runs_here_with", "an emulator"))
    result = profile_local(LocalRequest(copy, Settings(runs=1, warmup=1, cooldown_s=0), inpaint_runs=0, ops=False,
                                        graphs=("unet",)))
    assert result["interpreted"] == "xnnpack run by an emulator on this host: not a device speed"
    assert result["interpreted"] in result["warnings"]
    assert list(result["graphs"]) == ["unet"] and "inpaint" not in result
