"""`edge matrix`'s work: every entry compiled and checked in a staging folder inside OUT, renamed into place when
both finished; serially in this process, or one Ray task per entry (edge.cluster.session).

  OUT/<name>/bundle/        the entry's bundle (edge compile)
  OUT/<name>/result.json    the entry, its input hash, the compile summary, the check's JSON, the UNet's speed
                            where the target runs here, seconds
  OUT/<name>/report.html    the check's report
  OUT/.staging-<name>-XXXX  an entry being built: removed when it fails or is interrupted; one left by a killed
                            process or a Ray worker that died is removed by the next run (and by the entry's retry)
  OUT/summary.json, .html   edge.matrix.summary, rewritten as each entry finishes

A finished entry is reused by a rerun when its result.json reads back with the entry's current input hash and its
bundle opens with every hash intact (edge.bundle.bundle.open_bundle); anything else at OUT/<name> is built again
(a folder there that is no entry is left alone and is the entry's error). An error inside an entry (an EdgeError:
a bad input only compiling or checking finds, such as a recipe naming a module the graphs lack; or any other
exception, named with its type) is that entry's summary row, and the other entries go on.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from edge.bundle.bundle import Bundle, open_bundle
from edge.bundle.writer import is_bundle_folder
from edge.cluster.session import set_task_threads
from edge.compile.stages import CompileRequest, compile_bundle, compile_summary
from edge.device.measure import Settings
from edge.device.profile import profile_graph
from edge.errors import EdgeError
from edge.files import read_json, require_folder, write_text_atomically
from edge.matrix.plan import Entry, Matrix
from edge.matrix.summary import entry_row, summary_json, write_summary
from edge.quality.check import CheckRequest, plan_check, run_check
from edge.quality.report import render_report
from edge.targets import load_target

BUNDLE, RESULT, REPORT = "bundle", "result.json", "report.html"
STAGING = ".staging-"  # OUT/.staging-<entry name>-<mkdtemp's random letters, never a dash>
RESULT_SCHEMA = 1
SPEED_SETTINGS = Settings(runs=5, warmup=1, cooldown_s=0)

OnEntry = Callable[[int, int], None]


def run_matrix(matrix: Matrix, out: Path, threads: int | None = None, ray_address: str | None = None,
               on_entry: OnEntry = lambda done, total: None) -> dict:
    """Every entry of the matrix into OUT, finished ones reused; the others in this process, or as Ray tasks
    when ray_address is given (edge.cluster.session.LOCAL: an embedded Ray). Returns the summary (summary.json's
    content), written after each entry finishes; on_entry(done, total) counts finished entries."""
    require_folder(out)
    if out.exists() and not out.is_dir():
        raise EdgeError(f"{out}: is a file, not a folder")
    out.mkdir(exist_ok=True)
    out = out.resolve()  # Ray workers have their own working folder
    for folder in out.glob(f"{STAGING}*"):  # left by a killed run
        shutil.rmtree(folder, ignore_errors=True)
    rows = {entry.name: entry_row(entry) for entry in matrix.entries}  # pending
    todo = []
    for entry in matrix.entries:
        reused = finished_entry(entry, out)
        if reused is None:
            todo.append(entry)
        else:
            rows[entry.name] = entry_row(entry, reused, reused=True, seconds=reused.get("seconds"))

    def record(row: dict | None) -> None:
        if row is not None:
            rows[row["name"]] = row
        write_summary(out, summary_json(matrix, out, list(rows.values())))
        on_entry(len(matrix.entries) - sum(row["status"] == "pending" for row in rows.values()), len(rows))

    record(None)
    if todo and ray_address:
        _run_on_ray(todo, out, threads or 1, ray_address, record)
    else:
        for entry in todo:
            record(run_entry(entry, out, threads))
    return summary_json(matrix, out, list(rows.values()))


def _run_on_ray(entries: list[Entry], out: Path, threads: int, address: str, record: Callable[[dict], None]) -> None:
    """One Ray task per entry (paths in, a summary row out), each recorded as it finishes. A task whose worker
    died is retried by Ray (edge.cluster.session.TASK_RETRIES); one that Ray gives up on is its entry's error."""
    from edge.cluster.session import ray_session

    with ray_session(address, threads) as session:
        task = session.remote(run_entry)
        running = {task.remote(entry, out, threads): entry for entry in entries}
        while running:
            [ready], _ = session.ray.wait(list(running), num_returns=1)
            entry = running.pop(ready)
            try:
                row = session.get(ready)
            except session.ray.exceptions.RayError as err:
                _discard_staging(out, entry.name)
                row = entry_row(entry, error=f"Ray: {_first_line(err)}")
            record(row)


def run_entry(entry: Entry, out: Path, threads: int | None) -> dict:
    """Compile and check one entry in OUT/.staging-<name>-*, renamed to OUT/<name> when both finished; its summary
    row. An error is the row's, never raised; an interruption (Ctrl-C, SIGTERM) removes the staging folder."""
    if threads:
        set_task_threads(threads)
    _discard_staging(out, entry.name)  # a try of this entry whose worker died
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{entry.name}-", dir=out))
    try:
        final = out / entry.name
        _remove_outdated(final, staging)
        result = _build(entry, staging, final)
        result["seconds"] = round(time.perf_counter() - started, 1)
        write_text_atomically(staging / RESULT, json.dumps(result, indent=1) + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; an entry is meant to be shared, as its files are
        os.replace(staging, final)
        return entry_row(entry, result, reused=False, seconds=result["seconds"])
    except EdgeError as err:
        return entry_row(entry, error=err.message, seconds=round(time.perf_counter() - started, 1))
    except Exception as err:  # noqa: BLE001 - a bug, not the input: one entry lost, not the matrix; traceback kept
        return entry_row(entry, error=f"{type(err).__name__}: {_first_line(err)}",
                         seconds=round(time.perf_counter() - started, 1), trace=traceback.format_exc())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build(entry: Entry, staging: Path, final: Path) -> dict:
    """The entry's bundle, check and report in `staging`; result.json's content, with paths as they will be once
    the folder is renamed to `final`."""
    request = CompileRequest(entry.model, entry.target, entry.quant, staging / BUNDLE, entry.weights, entry.vae,
                             entry.calib, recipe=entry.recipe)
    started = time.perf_counter()
    bundle = open_bundle(compile_bundle(request))
    compiled = compile_summary(bundle, final / BUNDLE, round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    result = run_check(plan_check(CheckRequest(bundle.path, entry.eval_dir, entry.weights, entry.vae)))
    result = replace(result, bundle=replace(result.bundle, path=final / BUNDLE))
    write_text_atomically(staging / REPORT, render_report(result))
    check = {"report": str(final / REPORT), **result.to_json(), "seconds": round(time.perf_counter() - started, 1)}
    return {"schema": RESULT_SCHEMA, "entry": entry.to_json(), "input_hash": entry.input_hash, "compile": compiled,
            "check": check, "speed": unet_speed(bundle)}


def unet_speed(bundle: Bundle) -> dict | None:
    """The UNet's time per call on its golden inputs where the target's runtime runs here (edge profile's
    discipline, few runs: a matrix compares entries, benchmarks/ measures); None where it does not."""
    if not load_target(bundle.manifest.target).runs_here:
        return None
    measured = profile_graph(bundle, "unet", SPEED_SETTINGS)
    return {"unet_median_ms": measured["median_ms"], "runs": measured["runs"], "threads": torch.get_num_threads()}


def finished_entry(entry: Entry, out: Path) -> dict | None:
    """OUT/<name>/result.json's content when the entry is finished for these inputs: the result records the entry's
    input hash, and its bundle and report are there, the bundle's hashes intact. None: build it (again)."""
    folder = out / entry.name
    try:
        result = read_json(folder / RESULT)
        open_bundle(folder / BUNDLE)
    except (EdgeError, OSError):
        return None
    complete = (isinstance(result, dict) and result.get("input_hash") == entry.input_hash
                and isinstance(result.get("compile"), dict) and isinstance(result.get("check"), dict))
    return result if complete and (folder / REPORT).is_file() else None


def _is_entry(folder: Path) -> bool:
    """A folder this command wrote (what it may replace): it holds result.json or a bundle."""
    return folder.is_dir() and not folder.is_symlink() and ((folder / RESULT).is_file() or is_bundle_folder(folder / BUNDLE))


def _remove_outdated(final: Path, staging: Path) -> None:
    """An earlier entry at `final` (damaged, outdated or half-built: it was not reused) is moved into the staging
    folder, in one rename, and removed there; anything else at `final` is the user's and stops the entry."""
    if not (final.exists() or final.is_symlink()):
        return
    if not _is_entry(final):
        raise EdgeError(f"{final}: exists and is not a matrix entry (no {RESULT}, no bundle); remove it or "
                        "choose another -o")
    os.replace(final, staging / "outdated")
    shutil.rmtree(staging / "outdated")


def _discard_staging(out: Path, name: str) -> None:
    for folder in out.glob(f"{STAGING}{name}-*"):
        if folder.name.removeprefix(STAGING).rpartition("-")[0] == name:  # not another entry whose name goes on
            shutil.rmtree(folder, ignore_errors=True)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
