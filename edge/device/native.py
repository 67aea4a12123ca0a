"""The native ExecuTorch runner (android_demo/runner): build it, feed it a bundle's golden inputs, read its line.

The runner is a small C++ program against an installed ExecuTorch: the pip wheel here (its CMake
package ships headers and shared libraries), an ExecuTorch build for Android when cross-compiling.
It prints one JSON line of timings (edge.device.measure summarizes them the same way as Python's); the
bundle's golden inputs go to it as raw float32 files named with their shapes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.bundle.bundle import Bundle
from edge.cache import cache_dir
from edge.device.measure import Settings, cool_down, summarize
from edge.errors import EdgeError

SOURCE = Path(__file__).resolve().parents[2] / "android_demo" / "runner"
BINARY = "edge_runner"
HOST = "host"
ANDROID_ABIS = ("arm64-v8a",)
NDK_VARIABLES = ("ANDROID_NDK_HOME", "ANDROID_NDK_ROOT", "ANDROID_NDK")
ANDROID_EXECUTORCH_VARIABLE = "EXECUTORCH_ANDROID_PREFIX"  # an ExecuTorch install built for the ABI
ANDROID_PLATFORM = "android-26"


def build_folder(abi: str = HOST) -> Path:
    return cache_dir() / "runner" / abi


def built_runner(abi: str = HOST) -> Path | None:
    binary = build_folder(abi) / BINARY
    return binary if binary.is_file() else None


def executorch_prefix() -> Path:
    """The installed executorch package (a namespace package: no __file__), which holds its CMake config."""
    import importlib.util

    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeError("the executorch Python package is not installed (pip install executorch)")
    return Path(list(spec.submodule_search_locations)[0])


def _android_settings(abi: str) -> list[str]:
    """CMake arguments for a cross-compile, or EdgeError naming everything that is missing."""
    if abi not in ANDROID_ABIS:
        raise EdgeError(f"--abi {abi}: supported ABIs are {', '.join(ANDROID_ABIS)}")
    missing = []
    ndk = next((Path(os.environ[v]) for v in NDK_VARIABLES if os.environ.get(v)), None)
    toolchain = ndk / "build" / "cmake" / "android.toolchain.cmake" if ndk else None
    if ndk is None:
        missing.append(f"the Android NDK (set {NDK_VARIABLES[0]} to its folder)")
    elif not toolchain.is_file():
        missing.append(f"the NDK's CMake toolchain file ({toolchain} does not exist)")
    prefix = os.environ.get(ANDROID_EXECUTORCH_VARIABLE)
    if not prefix:
        missing.append(f"an ExecuTorch build for {abi} (set {ANDROID_EXECUTORCH_VARIABLE} to its install "
                       "folder; see android_demo/runner/README.md)")
    elif not any(Path(prefix).glob("lib*/cmake/**/executorch-config.cmake")):
        missing.append(f"{ANDROID_EXECUTORCH_VARIABLE}={prefix} holds no lib/cmake/.../executorch-config.cmake")
    if missing:
        raise EdgeError(f"cannot build the runner for {abi}: missing " + "; ".join(missing))
    return [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", f"-DANDROID_ABI={abi}", f"-DANDROID_PLATFORM={ANDROID_PLATFORM}",
            f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=BOTH"]


def build_runner(abi: str = HOST, say: Callable[[str], None] = lambda line: None) -> Path:
    """Configure and build android_demo/runner with CMake into the cache; the binary's path."""
    if shutil.which("cmake") is None:
        raise EdgeError("cmake is not installed (apt-get install cmake)")
    extra = [f"-DCMAKE_PREFIX_PATH={executorch_prefix()}"] if abi == HOST else _android_settings(abi)
    folder = build_folder(abi)
    steps = (["cmake", "-S", str(SOURCE), "-B", str(folder), "-DCMAKE_BUILD_TYPE=Release", *extra],
             ["cmake", "--build", str(folder), "-j", str(os.cpu_count() or 1)])
    for step in steps:
        say(" ".join(step))
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise EdgeError(f"runner build failed ({' '.join(step[:2])}):\n{tail}")
    return folder / BINARY


def write_inputs(bundle: Bundle, graph: str, folder: Path) -> list[tuple[Path, list[int]]]:
    """The graph's golden inputs as raw float32 files in `folder`: [(file, shape)]."""
    inputs, _, _ = bundle.golden_case(graph)
    files = []
    for index, tensor in enumerate(inputs):
        path = folder / f"{graph}.input.{index}.f32"
        tensor.contiguous().numpy().astype("<f4").tofile(path)
        files.append((path, list(tensor.shape)))
    return files


def runner_arguments(model: str, inputs: list[tuple[str, list[int]]], settings: Settings,
                     etdump: str | None = None, output: str | None = None) -> list[str]:
    """The runner's command line (paths as the machine that runs it sees them)."""
    arguments = ["--model", model, "--runs", str(settings.runs), "--warmup", str(settings.warmup)]
    for path, shape in inputs:
        arguments += ["--input", f"{path}:{'x'.join(map(str, shape))}"]
    if settings.threads:
        arguments += ["--threads", str(settings.threads)]
    if etdump:
        arguments += ["--etdump", etdump]
    if output:
        arguments += ["--output", output]
    return arguments


def parse_runner_line(stdout: str, what: str) -> dict:
    """The runner's JSON line -> a graph record (edge.device.measure summary, load and first call, peak RSS)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise EdgeError(f"{what}: the runner printed no result line")
    try:
        reply = json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise EdgeError(f"{what}: the runner's line is not JSON ({err.msg})") from err
    if "error" in reply:
        raise EdgeError(f"{what}: runner error: {reply['error']}")
    return {"load_ms": round(reply["load_ms"], 3), "first_run_ms": round(reply["first_run_ms"], 3),
            **summarize(reply["runs_ms"]), "threads": reply["threads"],
            "peak_rss_mb": round(reply["peak_rss_kb"] / 1024, 1), "output_shape": reply["output_shape"]}


def max_abs_vs_golden(bundle: Bundle, graph: str, output_file: Path) -> float:
    _, expected, _ = bundle.golden_case(graph)
    output = np.fromfile(output_file, dtype="<f4")
    if output.size != expected.numel():
        raise EdgeError(f"{output_file}: {output.size} values, the golden output has {expected.numel()}")
    return float(np.abs(output - expected.numpy().ravel()).max())


def profile_native(binary: Path, bundle: Bundle, graphs: tuple[str, ...], settings: Settings,
                   timeout_s: float = 600.0) -> dict:
    """Each graph timed by the runner on its golden inputs; its output checked against the golden output."""
    import tempfile

    records = {}
    with tempfile.TemporaryDirectory(prefix="edge-runner-") as tmp:
        folder = Path(tmp)
        for index, name in enumerate(graphs):
            if index:
                cool_down(settings)
            inputs = [(str(path), shape) for path, shape in write_inputs(bundle, name, folder)]
            output = folder / f"{name}.output.f32"
            command = [str(binary), *runner_arguments(str(bundle.graph_file(name)), inputs, settings, output=str(output))]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired as err:
                raise EdgeError(f"{name}: the native runner took over {timeout_s:.0f} s") from err
            if done.returncode not in (0, 1):
                raise EdgeError(f"{name}: the native runner died (exit status {done.returncode}): "
                                f"{done.stderr.strip().splitlines()[-1:] or ''}")
            records[name] = parse_runner_line(done.stdout, f"{name} ({binary})")
            records[name]["max_abs_vs_golden"] = max_abs_vs_golden(bundle, name, output)
    return {"runner": str(binary), "graphs": records}
