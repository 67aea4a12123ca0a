"""edge devices / edge profile --device adb through Debian's real `adb` client, against an emulated device
(tests/adb_emulator.py) on loopback that runs the host-built native runner in a sandbox folder."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from adb_emulator import AdbServer, EmulatedDevice
from typer.testing import CliRunner

from edge.cli import app

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="needs Debian's adb client (apt-get install adb)")


@pytest.fixture
def phone(tmp_path):
    return EmulatedDevice("EMU0001", tmp_path / "phone")


def serve(monkeypatch, tmp_path, *devices):
    server = AdbServer(list(devices), tmp_path / "stubs")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    return server


def edge(*arguments):
    result = CliRunner().invoke(app, [*arguments, "--json"])
    return result.exit_code, (json.loads(result.stdout) if result.exit_code == 0 else result.output)


def profile(tiny_int8_copy, native_runner, tmp_path, *extra):
    return edge("profile", str(tiny_int8_copy), "--device", "adb", "--runner", str(native_runner), "--runs", "2", "--warmup", "1",
                "--cooldown", "0", "--save-dir", str(tmp_path / "profiles"), *extra)


def test_devices_describes_the_attached_phone(monkeypatch, tmp_path, phone):
    with serve(monkeypatch, tmp_path, phone):
        code, payload = edge("devices")
    assert code == 0, payload
    (row,) = payload["devices"]
    assert (row["serial"], row["state"], row["model"], row["soc"], row["android"], row["abi"]) == \
        ("EMU0001", "device", "Pixel Emu", "Tensor Emu", "14", "arm64-v8a")
    assert row["cpus"] == 8 and row["big_cores"] == [7]  # the one 2.9 GHz prime core


def test_profile_over_adb_end_to_end(monkeypatch, tmp_path, phone, tiny_int8_copy, native_runner):
    with serve(monkeypatch, tmp_path, phone):
        code, first = profile(tiny_int8_copy, native_runner, tmp_path)
        assert code == 0, first
        phone.heats_up = True
        code, second = profile(tiny_int8_copy, native_runner, tmp_path, "--clean")
        assert code == 0, second
    assert first["complete"] and first["device"]["model"] == "Pixel Emu" and first["pinned_cores"] == [7]
    assert first["settings"]["threads"] == 1  # one thread per pinned core
    assert first["device"]["cpus"]["7"] == {"max_khz": 2_900_000, "governor": "schedutil"}
    for graph in first["graphs"].values():
        assert graph["runs"] == 2 and graph["min_ms"] <= graph["median_ms"] <= graph["max_ms"] and graph["threads"] == 1
    graphs, steps = first["graphs"], 19
    assert first["inpaint_estimate_ms"] == pytest.approx(2 * graphs["encoder"]["median_ms"] + steps * graphs["unet"]["median_ms"]
                                                         + graphs["decoder"]["median_ms"], abs=0.01)
    assert any("taskset 80 " in request for request in phone.requests)  # pinned to CPU 7
    assert "unet.pte" in first["pushed"] and "bin/edge_runner" in first["pushed"]
    assert second["pushed"] == []  # every hash already on the device
    for name, ops in first["ops"].items():
        assert ops["top"] and ops["top"][0]["delegated"], name
    assert first["thermal_before"]["status"] == 0 and not any("thermal" in w for w in first["warnings"])
    assert second["thermal_after"]["status"] == 2 and any("thermal status rose" in w for w in second["warnings"])
    assert not (phone.root / second["cleaned"].lstrip("/")).exists()
    assert (phone.root / "data/local/tmp/edge/bin/edge_runner").is_file()  # the runner stays for the next bundle
    assert len(list((tmp_path / "profiles").glob("*-EMU0001*.json"))) == 2


def test_pushed_files_match_the_bundle(monkeypatch, tmp_path, phone, tiny_int8_copy, native_runner):
    with serve(monkeypatch, tmp_path, phone):
        code, result = profile(tiny_int8_copy, native_runner, tmp_path, "--no-ops")
    assert code == 0, result
    (folder,) = (phone.root / "data/local/tmp/edge").glob("tiny-int8-*")
    for name in ("encoder.pte", "unet.pte", "decoder.pte"):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == \
            hashlib.sha256((tiny_int8_copy / name).read_bytes()).hexdigest()
    assert "ops" not in result


def test_no_device_several_devices_and_unknown_serial(monkeypatch, tmp_path, tiny_int8_copy, native_runner):
    with serve(monkeypatch, tmp_path):
        code, output = profile(tiny_int8_copy, native_runner, tmp_path)
    assert code == 2 and "no Android device attached" in output
    two = [EmulatedDevice(serial, tmp_path / serial) for serial in ("EMU0001", "EMU0002")]
    with serve(monkeypatch, tmp_path, *two):
        code, output = profile(tiny_int8_copy, native_runner, tmp_path)
        assert code == 2 and "2 devices attached (EMU0001, EMU0002)" in output and "adb:SERIAL" in output
        code, output = edge("profile", str(tiny_int8_copy), "--device", "adb:NOPE")
        assert code == 2 and "adb:NOPE: no such device" in output


def test_device_gone_mid_run_keeps_what_was_measured(monkeypatch, tmp_path, phone, tiny_int8_copy, native_runner):
    phone.gone_at_runner_call = 2  # unplugged during the UNet
    with serve(monkeypatch, tmp_path, phone):
        code, output = profile(tiny_int8_copy, native_runner, tmp_path)
    assert code == 2 and "EMU0001: the device disconnected" in output and "measured so far" in output
    (partial,) = (tmp_path / "profiles").glob("*-EMU0001.json")
    saved = json.loads(partial.read_text())
    assert saved["complete"] is False and list(saved["graphs"]) == ["encoder"] and "disconnected" in saved["error"]


def test_full_storage_is_a_clear_error(monkeypatch, tmp_path, phone, tiny_int8_copy, native_runner):
    phone.storage_bytes = 64 * 1024  # less than one program
    with serve(monkeypatch, tmp_path, phone):
        code, output = profile(tiny_int8_copy, native_runner, tmp_path)
    assert code == 2 and "no space left on the device" in output and "--clean" in output


def test_runner_crash_is_reported_with_its_signal(monkeypatch, tmp_path, phone, tiny_int8_copy, native_runner):
    phone.runner_fault, phone.fault_from_runner_call = "crash", 3
    with serve(monkeypatch, tmp_path, phone):
        code, output = profile(tiny_int8_copy, native_runner, tmp_path)
    assert code == 2 and "the runner crashed on decoder (signal 11)" in output
    (partial,) = (tmp_path / "profiles").glob("*-EMU0001.json")
    assert list(json.loads(partial.read_text())["graphs"]) == ["encoder", "unet"]


def test_runner_timeout(monkeypatch, tmp_path, phone, tiny_int8_copy, native_runner):
    phone.runner_fault = "hang"
    with serve(monkeypatch, tmp_path, phone):
        code, output = profile(tiny_int8_copy, native_runner, tmp_path, "--timeout", "3")
    assert code == 2 and "timed out after 3 s" in output
