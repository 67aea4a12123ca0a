"""edge android push through Debian's real `adb` client, against the emulated device of tests/adb_emulator.py: the
bundle lands in the app's external files folder byte for byte, is verified there, and is pushed again only where
the device's copy differs."""

from __future__ import annotations

import json
import shutil

import pytest
from adb_emulator import AdbServer, EmulatedDevice
from typer.testing import CliRunner

from edge.cli import app
from edge.device.push import app_bundle_folder

pytestmark = pytest.mark.skipif(shutil.which("adb") is None, reason="needs Debian's adb client (apt-get install adb)")


@pytest.fixture
def phone(tmp_path):
    return EmulatedDevice("EMU0001", tmp_path / "phone")


@pytest.fixture
def bundle(compiled):
    return compiled("xnnpack", "fp32")


def serve(monkeypatch, tmp_path, *devices):
    server = AdbServer(list(devices), tmp_path / "stubs")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    return server


def push(*arguments):
    return CliRunner().invoke(app, ["android", "push", *map(str, arguments)])


def on_phone(phone):
    return phone.local(app_bundle_folder())


def bundle_files(bundle):
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())


def test_push_puts_the_bundle_where_the_app_finds_it(monkeypatch, tmp_path, phone, bundle):
    stale = on_phone(phone)
    stale.mkdir(parents=True)
    (stale / "manifest.json").write_text("{}")  # another bundle's, with a file this one lacks
    (stale / "unet.tflite").write_bytes(b"old")
    with serve(monkeypatch, tmp_path, phone):
        first = push(bundle, "--json")
        again = push(bundle, "--json")
        (on_phone(phone) / "unet.pte").write_bytes(b"damaged on the device")
        repaired = push(bundle)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    folder = on_phone(phone)
    assert result["folder"] == "/sdcard/Android/data/dev.edge.inpaint/files/bundle" and result["verified"]
    assert bundle_files(folder) == sorted(result["pushed"]) == bundle_files(bundle)  # old files gone
    for name in result["pushed"]:
        assert (folder / name).read_bytes() == (bundle / name).read_bytes(), name
    assert result["pushed"][-2:] == ["manifest.json", "manifest.sha256"]  # last: a cut-short push is refused
    assert result["pushed_bytes"] == sum((bundle / name).stat().st_size for name in result["pushed"])
    assert again.exit_code == 0 and json.loads(again.stdout)["pushed"] == []  # every sha256 already there
    assert repaired.exit_code == 0, repaired.output
    assert "[1/1] unet.pte" in repaired.output and "1 pushed" in repaired.output
    assert (folder / "unet.pte").read_bytes() == (bundle / "unet.pte").read_bytes()


def test_a_file_that_does_not_arrive_fails_the_check_on_the_device(monkeypatch, tmp_path, phone, bundle):
    from edge.device.adb import Device

    real_push = Device.push

    def losing_the_unet(self, local, remote):
        if local.name != "unet.pte":
            real_push(self, local, remote)

    monkeypatch.setattr(Device, "push", losing_the_unet)
    with serve(monkeypatch, tmp_path, phone):
        result = push(bundle)
    assert result.exit_code == 2
    assert "error: adb:EMU0001: /sdcard/Android/data/dev.edge.inpaint/files/bundle/unet.pte is missing after the " \
           "push (1 of" in result.output


def test_not_a_bundle_and_unknown_device_are_one_error_line(monkeypatch, tmp_path, phone, bundle):
    with serve(monkeypatch, tmp_path, phone):
        not_bundle = push(tmp_path)
        unknown = push(bundle, "--device", "NOPE")
    assert not_bundle.exit_code == 2 and not_bundle.output.strip().splitlines() == \
        [f"error: {tmp_path}: not a bundle (no manifest.json)"]
    assert unknown.exit_code == 2 and unknown.output.strip().splitlines() == \
        ["error: adb:NOPE: no such device (attached: EMU0001)"]
    assert not (phone.root / "sdcard").exists()  # nothing was pushed
