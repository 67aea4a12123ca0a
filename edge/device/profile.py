"""`edge profile --device local`: a bundle's latency and memory on this machine, per graph and end to end.

Every graph runs on its golden inputs through the bundle's backend (`Bundle.load_program`, so any
bundle kind whose runtime exists here works): load time, first call, warm-up, timed runs, peak RSS;
then the full inpaint (2 encodes, one CFG UNet call per sampling step, 1 decode) on the golden image
with a centred square mask. A backend with an `op_profile` method adds the top ops of each graph;
the native runner (edge.device.native), when given, times the same programs outside Python in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from edge.backends.contract import ProfilesOps, SetsThreads
from edge.bundle.bundle import Bundle, open_bundle
from edge.compile.graphs import GRAPH_NAMES
from edge.device.measure import PeakRss, Settings, cool_down, summarize, time_calls, unstable
from edge.errors import EdgeError
from edge.files import write_text_atomically
from edge.pipeline.loop import CallableGraphs, inpaint_tensors, start_noise

PROFILES_FOLDER = "profiles"  # inside the bundle; not in the manifest's file list, so edge verify ignores it


@dataclass
class LocalRequest:
    bundle: Path
    settings: Settings = field(default_factory=Settings)
    inpaint_runs: int = 1  # full inpaints timed (after the graphs are warm)
    ops: bool = True  # per-op breakdown where the backend gives one
    native_runner: Path | None = None  # the C++ runner's binary: time the programs outside Python too
    graphs: tuple[str, ...] = GRAPH_NAMES


def host_description() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"kind": "local", "host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def _apply_threads(backend, threads: int | None, warnings: list[str]) -> None:
    if threads is None:
        return
    torch.set_num_threads(threads)
    if isinstance(backend, SetsThreads):
        backend.set_threads(threads)
    else:
        warnings.append(f"the {type(backend).__name__} runtime takes no thread count: --threads {threads} "
                        "applies to torch only")


def profile_graph(bundle: Bundle, name: str, settings: Settings) -> dict:
    """Load, first call, warm-up and timed runs of one graph on its golden inputs; peak RSS over all of it."""
    inputs, _, _ = bundle.golden_case(name)
    rss = PeakRss()
    rss.reset()
    before_mb = rss.current_mb()
    started = time.perf_counter()
    program = bundle.load_program(name)
    load_ms = (time.perf_counter() - started) * 1000
    with torch.no_grad():
        first_ms, summary = time_calls(lambda: program(*inputs), settings)
    peak_mb = rss.peak_mb()
    return {"file": bundle.manifest.graphs[name].file, "load_ms": round(load_ms, 3),
            "first_run_ms": round(first_ms, 3), **summary, "rss_before_mb": before_mb, "peak_rss_mb": peak_mb,
            "input_shapes": [list(t.shape) for t in inputs]}


class TimedGraphs(CallableGraphs):
    """CallableGraphs that add up each graph's call time (ms) during one inpaint."""

    def __init__(self, encoder: Callable, unet: Callable, decoder: Callable):
        self.spent = {name: 0.0 for name in GRAPH_NAMES}
        self.calls = {name: 0 for name in GRAPH_NAMES}
        super().__init__(*(self._timed(name, call) for name, call in zip(GRAPH_NAMES, (encoder, unet, decoder))))

    def _timed(self, name: str, call: Callable) -> Callable:
        def run(*tensors):
            started = time.perf_counter()
            result = call(*tensors)
            self.spent[name] += (time.perf_counter() - started) * 1000
            self.calls[name] += 1
            return result
        return run


def centred_mask(image: torch.Tensor) -> torch.Tensor:
    """(1, 1, S, S): the middle half of the picture to fill."""
    side = image.shape[-1]
    mask = torch.zeros(1, 1, side, side)
    mask[..., side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 1
    return mask


def profile_inpaint(bundle: Bundle, runs: int, on_step=None) -> dict:
    """The full inpaint, timed end to end `runs` times (programs loaded once, one untimed warm-up pass
    is not needed: the graphs were warmed by the per-graph profile), with each graph's share."""
    plan = bundle.sampling_plan()
    programs = [bundle.load_program(name) for name in GRAPH_NAMES]
    (image,), _, _ = bundle.golden_case("encoder")
    mask = centred_mask(image)
    latent_side = bundle.manifest.latent_size
    noise = start_noise((1, 4, latent_side, latent_side), seed=0)
    rss = PeakRss()
    rss.reset()
    totals, shares = [], []
    for _ in range(runs):
        graphs = TimedGraphs(*programs)
        started = time.perf_counter()
        inpaint_tensors(graphs, plan, image, mask, noise, on_step)
        totals.append((time.perf_counter() - started) * 1000)
        shares.append(graphs)
    last = shares[-1]
    return {"steps": plan.schedule.steps, **summarize(totals), "peak_rss_mb": rss.peak_mb(),
            "graph_ms": {name: round(last.spent[name], 3) for name in GRAPH_NAMES},
            "graph_calls": dict(last.calls)}


def profile_local(request: LocalRequest, say: Callable[[str], None] = lambda line: None,
                  on_step=None) -> dict:
    """The whole local profile as one JSON-able dict (see README "Profiling")."""
    bundle = open_bundle(request.bundle)
    manifest, settings = bundle.manifest, request.settings
    backend = bundle.backend()
    warnings: list[str] = []
    _apply_threads(backend, settings.threads, warnings)
    result = {"bundle": str(bundle.path), "model": manifest.model, "target": manifest.target,
              "backend": manifest.backend, "quant": manifest.quant, "device": host_description(),
              "runtime": f"{manifest.backend} (Python)", "settings": settings.to_json(),
              "started": datetime.now(UTC).isoformat(timespec="seconds"), "graphs": {}}
    emulator = manifest.tools.get("runs_here_with")  # a backend that runs here in an emulator says so
    if emulator:
        result["interpreted"] = f"{manifest.target} run by {emulator} on this host: not a device speed"
        warnings.append(result["interpreted"])
    for index, name in enumerate(request.graphs):
        if index:
            cool_down(settings)
        say(f"{name}: {settings.warmup} warm-up + {settings.runs} timed runs")
        result["graphs"][name] = graph = profile_graph(bundle, name, settings)
        if unstable(graph):
            warnings.append(f"{name}: unstable timings (CV {graph['cv']:.0%}); close other programs or add --runs")
    if request.inpaint_runs > 0:
        cool_down(settings)
        say(f"full inpaint ({request.inpaint_runs} run(s))")
        result["inpaint"] = profile_inpaint(bundle, request.inpaint_runs, on_step)
    if request.ops and isinstance(backend, ProfilesOps):
        result["ops"] = {}
        for name in request.graphs:
            say(f"{name}: per-op profile")
            inputs, _, _ = bundle.golden_case(name)
            result["ops"][name] = backend.op_profile(bundle.graph_file(name), inputs, runs=max(1, min(settings.runs, 3)))
    if request.native_runner is not None:
        from edge.device.native import profile_native

        cool_down(settings)
        say("native runner: the same graphs outside Python")
        result["native"] = profile_native(request.native_runner, bundle, request.graphs, settings)
        result["native_vs_python"] = {name: round(result["native"]["graphs"][name]["median_ms"]
                                                  / result["graphs"][name]["median_ms"], 3)
                                      for name in request.graphs}
    result["warnings"] = warnings
    return result


def save_profile(result: dict, folder: Path) -> Path:
    """Write the result as <folder>/<UTC timestamp>-<device>.json (folder default: BUNDLE/profiles)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    device = result["device"].get("serial", result["device"]["kind"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path, again = folder / f"{stamp}-{device}.json", 1
        while path.exists():  # two profiles within one second
            again += 1
            path = folder / f"{stamp}-{device}-{again}.json"
        write_text_atomically(path, json.dumps(result, indent=1) + "\n")
    except OSError as err:
        raise EdgeError(f"{folder}: cannot save the profile there ({err.strerror}); pass --save-dir") from err
    return path
