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
from dataclasses import dataclass
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
RUNNER_BACKEND = "xnnpack"  # the runner links ExecuTorch's XNNPACK delegate and portable ops, nothing else


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


@dataclass
class RunnerProgram:
    """One --model of a runner call, paths as the machine that runs it sees them."""

    model: str
    inputs: list[tuple[str, list[int]]]  # (raw float32 file, shape)
    output: str | None = None  # where output 0 is written


def runner_arguments(programs: list[RunnerProgram], settings: Settings, etdump: str | None = None,
                     workspace: str = "shared") -> list[str]:
    """The runner's command line: every program loaded and held, then each timed in turn."""
    arguments = []
    for program in programs:
        arguments += ["--model", program.model]
        for path, shape in program.inputs:
            arguments += ["--input", f"{path}:{'x'.join(map(str, shape))}"]
        if program.output:
            arguments += ["--output", program.output]
    arguments += ["--runs", str(settings.runs), "--warmup", str(settings.warmup), "--workspace", workspace]
    if settings.threads:
        arguments += ["--threads", str(settings.threads)]
    if etdump:
        arguments += ["--etdump", etdump]
    return arguments


def _runner_reply(stdout: str, what: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise EdgeError(f"{what}: the runner printed no result line")
    try:
        reply = json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise EdgeError(f"{what}: the runner's line is not JSON ({err.msg})") from err
    if "error" in reply:
        raise EdgeError(f"{what}: runner error: {reply['error']}")
    return reply


def _program_record(program: dict) -> dict:
    return {"load_ms": round(program["load_ms"], 3), "first_run_ms": round(program["first_run_ms"], 3),
            **summarize(program["runs_ms"]), "output_shape": program["output_shape"]}


def parse_runner_line(stdout: str, what: str) -> dict:
    """A one-program runner line -> a graph record (edge.device.measure summary, load and first call, peak RSS)."""
    reply = _runner_reply(stdout, what)
    return {**_program_record(reply["programs"][0]), "threads": reply["threads"],
            "peak_rss_mb": round(reply["peak_rss_kb"] / 1024, 1)}


def parse_held_line(stdout: str, what: str, names: tuple[str, ...]) -> dict:
    """A runner line for several programs held at once -> their records by name, and the memory they took."""
    reply = _runner_reply(stdout, what)
    return {"graphs": {name: _program_record(program) for name, program in zip(names, reply["programs"], strict=True)},
            "threads": reply["threads"], "workspace": reply["workspace"],
            "loaded_rss_mb": round(reply["loaded_rss_kb"] / 1024, 1), "peak_rss_mb": round(reply["peak_rss_kb"] / 1024, 1)}


def memory_summary(bundle: Bundle, held: dict, alone: dict[str, dict]) -> dict:
    """Peak RSS of the programs held together (`held`, from parse_held_line) and one at a time (the largest
    single-program peak in `alone`), each beside the programs' bytes on disk."""
    programs_mb = sum(bundle.graph_file(name).stat().st_size for name in held["graphs"]) / 2**20
    one_at_a_time = max(alone[name]["peak_rss_mb"] for name in held["graphs"])
    return {"programs_mb": round(programs_mb, 1), "workspace": held["workspace"],
            "loaded_rss_mb": held["loaded_rss_mb"], "held_peak_rss_mb": held["peak_rss_mb"],
            "held_vs_programs": round(held["peak_rss_mb"] / programs_mb, 2),
            "one_at_a_time_peak_rss_mb": one_at_a_time, "one_at_a_time_vs_programs": round(one_at_a_time / programs_mb, 2)}


def max_abs_vs_golden(bundle: Bundle, graph: str, output_file: Path) -> float:
    _, expected, _ = bundle.golden_case(graph)
    output = np.fromfile(output_file, dtype="<f4")
    if output.size != expected.numel():
        raise EdgeError(f"{output_file}: {output.size} values, the golden output has {expected.numel()}")
    return float(np.abs(output - expected.numpy().ravel()).max())


def run_runner(command: list[str], what: str, timeout_s: float) -> str:
    """The runner's stdout (exit status 1 is a reported error: its JSON line says which); a timeout or a crash raises."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise EdgeError(f"{what}: the native runner took over {timeout_s:.0f} s") from err
    if done.returncode not in (0, 1):
        raise EdgeError(f"{what}: the native runner died (exit status {done.returncode}): "
                        f"{done.stderr.strip().splitlines()[-1:] or ''}")
    return done.stdout


def profile_native(binary: Path, bundle: Bundle, graphs: tuple[str, ...], settings: Settings,
                   timeout_s: float = 600.0) -> dict:
    """Each graph timed by the runner on its golden inputs, its output checked against the golden output; then,
    for several graphs, all of them held in one runner (shared XNNPACK workspace) for the memory an app needs."""
    import tempfile

    records = {}
    with tempfile.TemporaryDirectory(prefix="edge-runner-") as tmp:
        folder = Path(tmp)
        programs = {name: RunnerProgram(str(bundle.graph_file(name)),
                                        [(str(path), shape) for path, shape in write_inputs(bundle, name, folder)],
                                        str(folder / f"{name}.output.f32"))
                    for name in graphs}
        for index, name in enumerate(graphs):
            if index:
                cool_down(settings)
            stdout = run_runner([str(binary), *runner_arguments([programs[name]], settings)], name, timeout_s)
            records[name] = parse_runner_line(stdout, f"{name} ({binary})")
            records[name]["max_abs_vs_golden"] = max_abs_vs_golden(bundle, name, Path(programs[name].output))
        result = {"runner": str(binary), "graphs": records}
        if len(graphs) > 1:
            cool_down(settings)
            once = Settings(1, 1, settings.threads, settings.cooldown_s)
            stdout = run_runner([str(binary), *runner_arguments(list(programs.values()), once)], "held", timeout_s)
            held = parse_held_line(stdout, f"{', '.join(graphs)} held together ({binary})", graphs)
            for name, record in held["graphs"].items():
                record["max_abs_vs_golden"] = max_abs_vs_golden(bundle, name, Path(programs[name].output))
            result["held"] = held
            result["memory"] = memory_summary(bundle, held, records)
    return result
