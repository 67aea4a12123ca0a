"""Android devices over adb: find one, describe it, push a bundle and the native runner, profile, pull ETDumps.

Talks to the device through the `adb` client (Debian: `apt-get install adb`; a server on another port
via ANDROID_ADB_SERVER_PORT). Plain `adb shell` (protocol v1) passes no exit status, so every command
ends by echoing its own (`__EDGE_RC=<n>`); a reply without that line means the connection dropped.
Files go to /data/local/tmp/edge/<bundle>-<manifest hash>/ and are pushed only when the device's
sha256 differs. The runner is pinned to the fastest cores (taskset, from the CPUs' max frequencies).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge.bundle.bundle import Bundle, open_bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.device.measure import Settings, cool_down, unstable
from edge.device.native import (
    BINARY,
    RUNNER_BACKEND,
    RunnerProgram,
    built_runner,
    memory_summary,
    parse_held_line,
    parse_runner_line,
    runner_arguments,
    write_inputs,
)
from edge.errors import EdgeError
from edge.models.weights import file_sha256

REMOTE_ROOT = "/data/local/tmp/edge"
RC_MARKER = "__EDGE_RC="
COMMAND_TIMEOUT_S = 60.0  # anything but the runner
DEVICE_SCRIPT = r"""
echo "model=$(getprop ro.product.model)"
echo "soc=$(getprop ro.soc.model)"
echo "platform=$(getprop ro.board.platform)"
echo "android=$(getprop ro.build.version.release)"
echo "abi=$(getprop ro.product.cpu.abi)"
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  echo "cpu=${c##*/cpu} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null || echo 0) $(cat $c/cpufreq/scaling_governor 2>/dev/null || echo ?)"
done
""".strip()
THERMAL_SCRIPT = r"""
dumpsys thermalservice 2>/dev/null | grep -m1 "Thermal Status"
for z in /sys/class/thermal/thermal_zone*/temp; do cat $z 2>/dev/null; done
""".strip()


def adb_binary() -> str:
    binary = shutil.which("adb")
    if binary is None:
        raise EdgeError("adb is not installed (Debian/Ubuntu: apt-get install adb)")
    return binary


def _adb(arguments: list[str], timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([adb_binary(), *arguments], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise EdgeError(f"adb {' '.join(arguments[:3])}: no answer within {timeout:.0f} s") from err


def list_devices() -> list[dict]:
    """`adb devices -l` as [{"serial", "state", "model", ...}] (state: device, unauthorized, offline)."""
    done = _adb(["devices", "-l"])
    if done.returncode != 0:
        raise EdgeError(f"adb devices failed: {(done.stderr or done.stdout).strip()}")
    devices = []
    for line in done.stdout.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*")):
            continue
        serial, state, *details = line.split()
        devices.append({"serial": serial, "state": state,
                        **dict(item.split(":", 1) for item in details if ":" in item)})
    return devices


def pick_device(serial: str | None) -> str:
    """The serial to use: the one asked for, or the only device attached; EdgeError otherwise."""
    devices = list_devices()
    if serial is not None:
        device = next((d for d in devices if d["serial"] == serial), None)
        if device is None:
            listed = ", ".join(d["serial"] for d in devices) or "none"
            raise EdgeError(f"adb:{serial}: no such device (attached: {listed})")
    elif not devices:
        raise EdgeError("no Android device attached (adb devices -l lists none): connect one with USB debugging on")
    elif len(devices) > 1:
        raise EdgeError(f"{len(devices)} devices attached ({', '.join(d['serial'] for d in devices)}): "
                        "pick one with --device adb:SERIAL")
    else:
        device = devices[0]
    if device["state"] != "device":
        raise EdgeError(f"adb:{device['serial']}: device is {device['state']} (unlock it and accept the USB debugging prompt)")
    return device["serial"]


class Device:
    """One attached device, by serial."""

    def __init__(self, serial: str):
        self.serial = serial

    def _gone_or(self, message: str) -> EdgeError:
        if not any(d["serial"] == self.serial and d["state"] == "device" for d in list_devices()):
            return EdgeError(f"adb:{self.serial}: the device disconnected")
        return EdgeError(f"adb:{self.serial}: {message}")

    def shell(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str]:
        """(exit status, output) of a shell command on the device."""
        try:
            done = subprocess.run([adb_binary(), "-s", self.serial, "shell", f"{command}; echo {RC_MARKER}$?"],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            self.shell(f"pkill -f {BINARY} || true")  # leave no runner burning the battery
            raise EdgeError(f"adb:{self.serial}: timed out after {timeout:.0f} s: {command[:80]}") from err
        output = done.stdout
        match = re.search(rf"{RC_MARKER}(\d+)\s*$", output)
        if done.returncode != 0 or match is None:
            raise self._gone_or(f"shell ended without an exit status ({(done.stderr or output).strip()[-200:]})")
        return int(match.group(1)), output[: match.start()]

    def check(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        status, output = self.shell(command, timeout)
        if status != 0:
            raise EdgeError(f"adb:{self.serial}: `{command[:80]}` failed (exit status {status}): {output.strip()[-300:]}")
        return output

    def push(self, local: Path, remote: str) -> None:
        done = _adb(["-s", self.serial, "push", str(local), remote], timeout=max(COMMAND_TIMEOUT_S, local.stat().st_size / 2e6))
        if done.returncode != 0:
            text = (done.stderr + done.stdout).strip()
            if "No space left" in text:
                raise EdgeError(f"adb:{self.serial}: no space left on the device for {local.name} "
                                f"({local.stat().st_size / 1e6:.1f} MB) in {remote.rsplit('/', 1)[0]}: free some, or "
                                "remove old bundles with edge profile --clean")
            raise self._gone_or(f"push {local.name} failed: {text[-200:]}")

    def pull(self, remote: str, local: Path) -> None:
        done = _adb(["-s", self.serial, "pull", remote, str(local)])
        if done.returncode != 0:
            raise self._gone_or(f"pull {remote} failed: {(done.stderr + done.stdout).strip()[-200:]}")

    def remote_hashes(self, folder: str) -> dict[str, str]:
        """{file name: sha256} of the files already in a device folder."""
        _, output = self.shell(f"cd {shlex.quote(folder)} 2>/dev/null && sha256sum * 2>/dev/null")
        return {line.split()[1]: line.split()[0] for line in output.splitlines() if len(line.split()) == 2}

    def sync(self, files: list[Path], folder: str) -> list[str]:
        """Push the files whose hash differs on the device; the names pushed."""
        self.check(f"mkdir -p {shlex.quote(folder)}")
        there = self.remote_hashes(folder)
        pushed = []
        for path in files:
            if there.get(path.name) != file_sha256(path):
                self.push(path, f"{folder}/{path.name}")
                pushed.append(path.name)
        return pushed


def describe(device: Device) -> dict:
    """Model, SoC, Android version, ABI, and per CPU its max frequency (kHz) and governor."""
    info, cpus = {}, {}
    for line in device.check(DEVICE_SCRIPT).splitlines():
        key, _, value = line.partition("=")
        if key == "cpu":
            number, max_khz, governor = value.split()
            cpus[int(number)] = {"max_khz": int(max_khz), "governor": governor}
        elif key:
            info[key] = value.strip()
    return {"kind": "adb", "serial": device.serial, "model": info.get("model"),
            "soc": info.get("soc") or info.get("platform"), "android": info.get("android"), "abi": info.get("abi"),
            "cpus": {str(n): cpus[n] for n in sorted(cpus)}}


def thermal(device: Device) -> dict:
    """{"status": Android thermal status (0 none .. 6 shutdown) or None, "max_zone_c": hottest zone or None}."""
    _, output = device.shell(THERMAL_SCRIPT)
    status = re.search(r"Thermal Status:\s*(\d+)", output)
    temps = [int(v) for v in re.findall(r"^-?\d+$", output, re.M)]
    hottest = max(temps) if temps else None
    return {"status": int(status.group(1)) if status else None,
            "max_zone_c": None if hottest is None else round(hottest / 1000 if hottest > 1000 else hottest, 1)}


def big_cores(cpus: dict) -> list[int]:
    """The CPUs with the highest max frequency (the 'big' or 'prime' cluster)."""
    top = max((c["max_khz"] for c in cpus.values()), default=0)
    return sorted(int(n) for n, c in cpus.items() if c["max_khz"] == top)


def taskset_mask(cores: list[int]) -> str:
    return format(sum(1 << core for core in cores), "x")


def remote_folder(bundle: Bundle) -> str:
    digest = hashlib.sha256((bundle.path / "manifest.json").read_bytes()).hexdigest()[:12]
    return f"{REMOTE_ROOT}/{bundle.path.resolve().name}-{digest}"


@dataclass
class RemoteRequest:
    bundle: Path
    serial: str | None = None
    settings: Settings = field(default_factory=Settings)
    timeout_s: float = 600.0  # one runner call
    clean: bool = False
    runner: Path | None = None  # default: `edge runner build --abi <the device's ABI>`
    ops: bool = True
    graphs: tuple[str, ...] = GRAPH_NAMES
    etdump_folder: Path | None = None  # where pulled ETDumps are kept (default: a temporary folder)


def _runner_for(abi: str, runner: Path | None) -> Path:
    if runner is not None:
        if not runner.is_file():
            raise EdgeError(f"--runner {runner}: no such file")
        return runner
    found = built_runner(abi)
    if found is None:
        raise EdgeError(f"no native runner built for {abi}: run edge runner build --abi {abi}")
    return found


def profile_remote(request: RemoteRequest, say: Callable[[str], None] = lambda line: None,
                   on_partial: Callable[[dict], Path] | None = None) -> dict:
    """Profile a bundle's graphs on a device with the native runner. On a failure mid-way, `on_partial`
    gets what was measured so far (complete: false) and the error names where it went."""
    bundle = open_bundle(request.bundle)
    if bundle.manifest.backend != RUNNER_BACKEND:
        raise EdgeError(f"{request.bundle}: adb profiling runs ExecuTorch {RUNNER_BACKEND} bundles; "
                        f"this one is {bundle.manifest.backend}")
    settings = request.settings
    device = Device(pick_device(request.serial))
    info = describe(device)
    cores = big_cores(info["cpus"])
    threads = settings.threads or len(cores) or None
    manifest = bundle.manifest
    result = {"bundle": str(bundle.path), "model": manifest.model, "target": manifest.target,
              "backend": manifest.backend, "quant": manifest.quant, "device": info,
              "runtime": "edge_runner (native ExecuTorch)", "settings": {**settings.to_json(), "threads": threads},
              "started": datetime.now(UTC).isoformat(timespec="seconds"), "pinned_cores": cores,
              "graphs": {}, "warnings": [], "complete": False}
    try:
        _run_on_device(device, bundle, request, info, cores, Settings(settings.runs, settings.warmup, threads,
                                                                       settings.cooldown_s), result, say)
    except EdgeError as err:
        if on_partial is None:
            raise
        result["error"] = err.message
        saved = on_partial(result)
        raise EdgeError(f"{err.message} (measured so far: {saved})") from err
    result["complete"] = True
    return result


def _run_on_device(device: Device, bundle: Bundle, request: RemoteRequest, info: dict, cores: list[int],
                   settings: Settings, result: dict, say: Callable[[str], None]) -> None:
    runner = _runner_for(info["abi"], request.runner)
    folder = remote_folder(bundle)
    result["thermal_before"] = thermal(device)
    with tempfile.TemporaryDirectory(prefix="edge-adb-") as tmp:
        staging = Path(tmp)
        inputs = {name: write_inputs(bundle, name, staging) for name in request.graphs}
        files = [bundle.graph_file(name) for name in request.graphs] + [p for specs in inputs.values() for p, _ in specs]
        say(f"adb:{device.serial}: syncing {len(files)} files to {folder}")
        result["pushed"] = device.sync(files, folder)
        result["pushed"] += [f"bin/{name}" for name in device.sync([runner], f"{REMOTE_ROOT}/bin")]
        binary = f"{REMOTE_ROOT}/bin/{runner.name}"
        device.check(f"chmod 755 {binary}")
        pin = f"taskset {taskset_mask(cores)} " if cores and len(cores) < len(info["cpus"]) else ""
        programs = {name: RunnerProgram(bundle.graph_file(name).name, [(path.name, shape) for path, shape in inputs[name]])
                    for name in request.graphs}
        for index, name in enumerate(request.graphs):
            if index:
                cool_down(settings)
            say(f"{name}: {settings.warmup} warm-up + {settings.runs} timed runs on {info['model']}")
            command = f"cd {folder} && {pin}{binary} " + shlex.join(runner_arguments([programs[name]], settings))
            result["graphs"][name] = graph = _run_runner(device, command, name, request.timeout_s)
            if unstable(graph):
                result["warnings"].append(f"{name}: unstable timings (CV {graph['cv']:.0%})")
        if len(programs) > 1:
            cool_down(settings)
            say(f"{', '.join(programs)} held together: peak memory")
            once = Settings(1, 1, settings.threads, settings.cooldown_s)
            command = f"cd {folder} && {pin}{binary} " + shlex.join(runner_arguments(list(programs.values()), once))
            output = _runner_output(device, command, "the programs held together", request.timeout_s)
            result["held"] = held = parse_held_line(output, f"adb:{device.serial} held", tuple(programs))
            result["memory"] = memory_summary(bundle, held, result["graphs"])
        if request.ops:
            result["ops"] = _device_ops(device, bundle, request, folder, binary, pin, inputs, settings, say)
    result["thermal_after"] = after = thermal(device)
    before = result["thermal_before"]
    if (after["status"] or 0) > (before["status"] or 0):
        result["warnings"].append(f"thermal status rose from {before['status']} to {after['status']}: "
                                  "the device throttled; add --cooldown or let it cool")
    graphs = result["graphs"]
    if all(name in graphs for name in GRAPH_NAMES):
        steps = bundle.sampling_plan().schedule.steps
        result["inpaint_estimate_ms"] = round(2 * graphs["encoder"]["median_ms"] + steps * graphs["unet"]["median_ms"]
                                              + graphs["decoder"]["median_ms"], 3)
    if request.clean:
        device.check(f"rm -rf {folder}")
        result["cleaned"] = folder


def _runner_output(device: Device, command: str, what: str, timeout_s: float) -> str:
    status, output = device.shell(command, timeout_s)
    if status >= 128:  # killed by a signal: 128 + its number
        raise EdgeError(f"adb:{device.serial}: the runner crashed on {what} (signal {status - 128}): "
                        f"{output.strip()[-200:]}")
    return output


def _run_runner(device: Device, command: str, what: str, timeout_s: float) -> dict:
    return parse_runner_line(_runner_output(device, command, what, timeout_s), f"adb:{device.serial} {what}")


def _device_ops(device, bundle, request, folder, binary, pin, inputs, settings, say) -> dict:
    """One extra runner call per graph with --etdump; the dumps pulled and ranked (edge.device.etdump)."""
    from edge.device.etdump import op_breakdown

    keep = request.etdump_folder or Path(tempfile.mkdtemp(prefix="edge-etdump-"))
    keep.mkdir(parents=True, exist_ok=True)
    ops = {}
    short = Settings(min(settings.runs, 3), 1, settings.threads, settings.cooldown_s)
    for name in request.graphs:
        say(f"{name}: ETDump run")
        program = RunnerProgram(bundle.graph_file(name).name, [(path.name, shape) for path, shape in inputs[name]])
        remote = f"{folder}/{name}.etdp"
        command = f"cd {folder} && {pin}{binary} " + shlex.join(runner_arguments([program], short, etdump=f"{name}.etdp"))
        _run_runner(device, command, f"{name} (ETDump)", request.timeout_s)
        local = keep / f"{device.serial}-{name}.etdp"
        device.pull(remote, local)
        ops[name] = {**op_breakdown(local), "etdump": str(local)}
    return ops


def devices_table() -> list[dict]:
    """`edge devices`: every attached device, described when it is usable."""
    rows = []
    for entry in list_devices():
        row = dict(entry)
        if entry["state"] == "device":
            info = describe(Device(entry["serial"]))
            row.update({k: info[k] for k in ("model", "soc", "android", "abi")}, big_cores=big_cores(info["cpus"]),
                       cpus=len(info["cpus"]))
        rows.append(row)
    return rows
