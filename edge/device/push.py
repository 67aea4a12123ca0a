"""`edge android push`: a bundle into the Android app's external files folder, where it looks for one.

The app (android_demo/app) opens `getExternalFilesDir(null)/bundle`, which adb reaches as
/sdcard/Android/data/<package>/files/bundle. The bundle is checked here first (`open_bundle`: digest, schema,
hashes); files already on the device with the right sha256 are not pushed again, a different bundle's files
are removed first, manifest.json and manifest.sha256 go last (a push cut short leaves a bundle the app refuses
rather than a mixed one), and every file is read back on the device with `sha256sum` against the manifest.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from edge.bundle.bundle import open_bundle
from edge.bundle.manifest import MANIFEST, MANIFEST_DIGEST
from edge.device.adb import Device, pick_device
from edge.errors import EdgeError
from edge.models.weights import file_sha256

APP_PACKAGE = "dev.edge.inpaint"  # android_demo/app/build.gradle.kts: applicationId
APP_BACKENDS = ("xnnpack", "vulkan", "tflite")  # the runtimes the app has a GraphRunner for


def app_bundle_folder(package: str = APP_PACKAGE) -> str:
    """The app's getExternalFilesDir(null)/bundle, as adb sees it."""
    return f"/sdcard/Android/data/{package}/files/bundle"


def device_hashes(device: Device, folder: str, names: list[str]) -> dict[str, str]:
    """{name: sha256} of those files that exist in the device folder (names relative to it)."""
    _, output = device.shell(f"cd {shlex.quote(folder)} 2>/dev/null && sha256sum {shlex.join(names)} 2>/dev/null")
    hashes = {}
    for line in output.splitlines():
        digest, _, name = line.strip().partition("  ")
        if len(digest) == 64 and name in names:
            hashes[name] = digest
    return hashes


def push_bundle(bundle_path: Path, serial: str | None = None, say: Callable[[str], None] = lambda line: None) -> dict:
    """Push the bundle to the app's folder on the device and verify it there; what was pushed and checked."""
    bundle = open_bundle(bundle_path)
    manifest = bundle.manifest
    if manifest.backend not in APP_BACKENDS:
        raise EdgeError(f"{bundle_path}: the Android app runs {', '.join(APP_BACKENDS)} bundles; this one is "
                        f"{manifest.backend}")
    device = Device(pick_device(serial))
    folder = app_bundle_folder()
    expected = {**manifest.files, MANIFEST: file_sha256(bundle.path / MANIFEST),
                MANIFEST_DIGEST: file_sha256(bundle.path / MANIFEST_DIGEST)}
    names = sorted(expected, key=lambda name: (name in (MANIFEST, MANIFEST_DIGEST), name))  # manifest last
    there = device_hashes(device, folder, names)
    if there.get(MANIFEST) != expected[MANIFEST]:
        say(f"adb:{device.serial}: clearing {folder}")
        device.check(f"rm -rf {shlex.quote(folder)}")
        there = {}
    to_push = [name for name in names if there.get(name) != expected[name]]
    total_bytes = sum((bundle.path / name).stat().st_size for name in to_push)
    for index, name in enumerate(to_push, 1):
        local = bundle.path / name
        say(f"[{index}/{len(to_push)}] {name} ({local.stat().st_size / 1e6:.1f} MB)")
        device.check(f"mkdir -p {shlex.quote(f'{folder}/{name}'.rsplit('/', 1)[0])}")
        device.push(local, f"{folder}/{name}")
    verified = device_hashes(device, folder, names)
    wrong = [name for name in names if verified.get(name) != expected[name]]
    if wrong:
        state = "is missing" if wrong[0] not in verified else "does not match its sha256"
        raise EdgeError(f"adb:{device.serial}: {folder}/{wrong[0]} {state} after the push ({len(wrong)} of "
                        f"{len(names)} files wrong): push again")
    say(f"adb:{device.serial}: {len(names)} files verified in {folder}")
    return {"bundle": str(bundle.path), "serial": device.serial, "package": APP_PACKAGE, "folder": folder,
            "backend": manifest.backend, "quant": manifest.quant, "files": len(names), "pushed": to_push,
            "pushed_bytes": total_bytes, "verified": True}
