"""An emulated Android device behind an adb server stand-in, on loopback, for the real `adb` client.

The server speaks the documented smart-socket protocol (4 hex digits of length, then the request;
"OKAY" or "FAIL" + length + message): host:version, host:devices(-l), host[-serial:S]:features (empty:
no shell v2, so the client uses plain shell: and sync v1), host:tport:serial:S / host:transport:S, then
on the same socket shell:CMD (output streamed, socket closed at the end) or sync: (STAT, SEND + DATA +
DONE, RECV, QUIT). A device is a sandbox folder standing for its filesystem: /data/..., /sys/... and /sdcard/...
in a command are rewritten into it, and getprop, dumpsys thermalservice, taskset and pkill are small
stand-in scripts. Programs run on this host, so the host-built runner plays the device's runner.

Faults, for the failure tests: the device disappears at the k-th runner call (its connection closes
mid-command), a storage quota (SEND answers "No space left on device"), and the runner crashing
(SIGSEGV) or hanging from the k-th call on. Everything is bounded: commands get killed after
COMMAND_LIMIT_S, and when the client hangs up.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

SERVER_VERSION = 41  # adb 29's ADB_SERVER_VERSION: any other makes the client kill and restart "its" server
COMMAND_LIMIT_S = 120
RUNNER_PATH = "/data/local/tmp/edge/bin/edge_runner"
STUBS = {
    "getprop": 'grep "^$1=" "$EMULATOR_ROOT/props" | cut -d= -f2-\n',
    "dumpsys": 'if [ "$1" = thermalservice ]; then echo "Thermal Status: $(cat "$EMULATOR_ROOT/thermal")"; fi\n',
    "taskset": 'shift\nexec "$@"\n',  # the device's CPU numbers are not this host's
    "pkill": "true\n",  # the server kills its own commands when the client hangs up
    "crashing_runner": "kill -SEGV $$\n",
    "hanging_runner": "sleep 30\n",
}


@dataclass
class EmulatedDevice:
    serial: str
    root: Path  # the device's filesystem
    model: str = "Pixel Emu"
    soc: str = "Tensor Emu"
    android: str = "14"
    abi: str = "arm64-v8a"
    cpu_max_khz: tuple[int, ...] = (1_800_000,) * 4 + (2_400_000,) * 3 + (2_900_000,)
    thermal_status: int = 0
    heats_up: bool = False  # thermal status 0 -> 2 after the first runner call
    storage_bytes: int | None = None  # quota of /data/local/tmp
    gone_at_runner_call: int | None = None  # 1-based
    runner_fault: str | None = None  # "crash" or "hang"
    fault_from_runner_call: int = 1
    runner_calls: int = 0
    present: bool = True
    requests: list[str] = field(default_factory=list)

    def __post_init__(self):
        props = {"ro.product.model": self.model, "ro.soc.model": self.soc, "ro.board.platform": "emu",
                 "ro.build.version.release": self.android, "ro.product.cpu.abi": self.abi}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "props").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.root / "thermal").write_text(str(self.thermal_status))
        (self.root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        for cpu, khz in enumerate(self.cpu_max_khz):
            folder = self.root / "sys" / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpuinfo_max_freq").write_text(f"{khz}\n")
            (folder / "scaling_governor").write_text("schedutil\n")

    def local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def used_bytes(self) -> int:
        folder = self.root / "data" / "local" / "tmp"
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class AdbServer:
    """`with AdbServer(devices) as server:` then run adb with ANDROID_ADB_SERVER_PORT=server.port."""

    def __init__(self, devices: list[EmulatedDevice], stubs: Path):
        self.devices = {d.serial: d for d in devices}
        self.stubs = stubs
        stubs.mkdir(parents=True, exist_ok=True)
        for name, body in STUBS.items():
            (stubs / name).write_text("#!/bin/sh\n" + body)
            (stubs / name).chmod(0o755)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def __enter__(self) -> AdbServer:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self.threads.append(accept)
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            thread.start()

    # --- smart sockets ---

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                device = None
                while True:
                    request = _read_request(connection)
                    if request is None:
                        return
                    if device is None:
                        device = self._host_request(connection, request)
                        if device is None:
                            return
                    else:
                        device.requests.append(request)
                        if request.startswith("shell:"):
                            self._shell(connection, device, request[len("shell:"):])
                        elif request == "sync:":
                            connection.sendall(b"OKAY")
                            _Sync(connection, device).serve()
                        else:
                            _fail(connection, f"unsupported service {request}")
                        return
            except (ConnectionError, OSError):
                return

    def _host_request(self, connection: socket.socket, request: str) -> EmulatedDevice | None:
        """Answer a host: request; the device when the socket switched to it (transport)."""
        present = [d for d in self.devices.values() if d.present]
        if request == "host:version":
            _okay(connection, f"{SERVER_VERSION:04x}")
        elif request in ("host:devices", "host:devices-l"):
            long = request.endswith("-l")
            _okay(connection, "".join(
                f"{d.serial}\tdevice" + (f" product:emu model:{d.model.replace(' ', '_')} device:emu transport_id:{n + 1}"
                                         if long else "") + "\n" for n, d in enumerate(present)))
        elif request.endswith(":features"):
            _okay(connection, "")
        elif request.startswith(("host:tport:", "host:transport")):
            serial = request.split(":")[-1] if ":serial:" in request or request.startswith("host:transport:") else None
            matches = [d for d in present if serial in (None, "any", d.serial)]
            if not matches:
                _fail(connection, f"device '{serial}' not found")
                return None
            connection.sendall(b"OKAY")
            if request.startswith("host:tport:"):
                connection.sendall(struct.pack("<Q", list(self.devices).index(matches[0].serial) + 1))
            return matches[0]
        elif request == "host:kill":
            connection.sendall(b"OKAY")
        else:
            _fail(connection, f"unsupported request {request}")
        return None

    # --- shell: ---

    def _shell(self, connection: socket.socket, device: EmulatedDevice, command: str) -> None:
        connection.sendall(b"OKAY")
        if "--model" in command and RUNNER_PATH in command:
            device.runner_calls += 1
            if device.gone_at_runner_call == device.runner_calls:
                device.present = False  # unplugged mid-run: the connection drops without a word
                return
            if device.runner_fault and device.runner_calls >= device.fault_from_runner_call:
                command = command.replace(RUNNER_PATH, str(self.stubs / f"{'crashing' if device.runner_fault == 'crash' else 'hanging'}_runner"))
            if device.heats_up:
                (device.root / "thermal").write_text("2")
        command = re.sub(r"(?<![\w./-])/(data|sys|sdcard)/", lambda m: f"{device.root}/{m.group(1)}/", command)
        environment = {"PATH": f"{self.stubs}:/usr/bin:/bin", "EMULATOR_ROOT": str(device.root), "HOME": str(device.root)}
        process = subprocess.Popen(["sh", "-c", command], cwd=device.root, env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._pump(connection, process)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _pump(self, connection: socket.socket, process: subprocess.Popen) -> None:
        """Stream the command's output; stop when it ends, the client hangs up, or the time limit passes."""
        import time

        deadline = time.monotonic() + COMMAND_LIMIT_S
        output = process.stdout.fileno()
        while time.monotonic() < deadline:
            readable, _, _ = select.select([output, connection], [], [], 0.5)
            if connection in readable and not connection.recv(1, socket.MSG_PEEK):
                return  # client hung up
            if output in readable:
                chunk = os.read(output, 65536)
                if not chunk:
                    return
                connection.sendall(chunk)


class _Sync:
    """The sync v1 service on one socket: 4-byte id + little-endian u32 length (or value) + payload."""

    def __init__(self, connection: socket.socket, device: EmulatedDevice):
        self.connection, self.device = connection, device

    def serve(self) -> None:
        while True:
            head = _read_exact(self.connection, 8)
            if head is None:
                return
            ident, length = head[:4], struct.unpack("<I", head[4:])[0]
            if ident == b"QUIT":
                return
            path = _read_exact(self.connection, length).decode()
            if ident == b"STAT":
                self._stat(path)
            elif ident == b"SEND":
                self._send(path)
            elif ident == b"RECV":
                self._recv(path)
            else:
                self._fail(f"unsupported sync request {ident!r}")
                return

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.connection.sendall(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _stat(self, path: str) -> None:
        local = self.device.local(path)
        if local.exists():
            info = local.stat()
            reply = struct.pack("<III", info.st_mode, info.st_size & 0xFFFFFFFF, int(info.st_mtime))
        else:
            reply = struct.pack("<III", 0, 0, 0)
        self.connection.sendall(b"STAT" + reply)

    def _send(self, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        chunks, quota_hit = [], False
        while True:
            head = _read_exact(self.connection, 8)
            if head is None:
                return
            ident, length = head[:4], struct.unpack("<I", head[4:])[0]
            if ident == b"DONE":
                break
            if ident != b"DATA":
                self._fail(f"expected DATA, got {ident!r}")
                return
            chunks.append(_read_exact(self.connection, length))
        data = b"".join(chunks)
        quota = self.device.storage_bytes
        if quota is not None and self.device.used_bytes() + len(data) > quota:
            quota_hit = True
        if quota_hit:
            self._fail(f"write failed: No space left on device ({path})")
            return
        local = self.device.local(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        local.chmod(int(mode) & 0o777 if mode.isdigit() else 0o644)
        self.connection.sendall(b"OKAY" + struct.pack("<I", 0))

    def _recv(self, path: str) -> None:
        local = self.device.local(path)
        if not local.is_file():
            self._fail(f"remote object '{path}' does not exist")
            return
        data = local.read_bytes()
        for start in range(0, len(data), 65536):
            chunk = data[start: start + 65536]
            self.connection.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        self.connection.sendall(b"DONE" + struct.pack("<I", 0))


def _read_exact(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_request(connection: socket.socket) -> str | None:
    head = _read_exact(connection, 4)
    if head is None:
        return None
    body = _read_exact(connection, int(head.decode(), 16))
    return None if body is None else body.decode()


def _okay(connection: socket.socket, payload: str) -> None:
    data = payload.encode()
    connection.sendall(b"OKAY" + f"{len(data):04x}".encode() + data)


def _fail(connection: socket.socket, message: str) -> None:
    data = message.encode()
    connection.sendall(b"FAIL" + f"{len(data):04x}".encode() + data)
