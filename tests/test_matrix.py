"""`edge matrix`: two cheap moebius-tiny-trained entries (web fp32 and fp16) compiled and checked on an embedded Ray,
then rerun: untouched (everything reused), after damage (the damaged entry redone, a bad entry reported, the rest
done), and given bad matrix files (one error line, nothing written).

The runs build on each other (module fixtures, in order): first, rerun, damaged rerun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.bundle.bundle import open_bundle
from edge.cli import app

ENTRIES = ("web-fp32", "web-fp16")
BAD = "web-fp32-missing-module"
runner = CliRunner()


@dataclass
class MatrixRun:
    exit_code: int
    summary: dict  # the --json output
    output: str

    def row(self, name: str) -> dict:
        return next(row for row in self.summary["entries"] if row["name"] == name)


def write_matrix(folder: Path, *entries: str) -> Path:
    """A matrix file with moebius-tiny-trained as its model and the given [[entry]] tables' bodies."""
    path = folder / "matrix.toml"
    path.write_text('model = "moebius-tiny-trained"\n' + "".join(f"\n[[entry]]\n{body}\n" for body in entries))
    return path


def run_matrix(matrix: Path, out: Path, *extra: str) -> MatrixRun:
    result = runner.invoke(app, ["matrix", str(matrix), "-o", str(out), "--json", *extra])
    assert result.exit_code in (0, 1), result.output
    return MatrixRun(result.exit_code, json.loads(result.stdout), result.output)


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def matrix_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("matrix")
    write_matrix(folder, 'target = "web"\nquant = "fp32"', 'target = "web"\nquant = "fp16"')
    return folder


@pytest.fixture(scope="module")
def first_run(matrix_dir) -> MatrixRun:
    return run_matrix(matrix_dir / "matrix.toml", matrix_dir / "out", "--ray")


@pytest.fixture(scope="module")
def rerun(first_run, matrix_dir) -> tuple[MatrixRun, dict, dict]:
    """(the rerun, OUT's mtimes before it, after it)."""
    out = matrix_dir / "out"
    before = mtimes(out)
    again = run_matrix(matrix_dir / "matrix.toml", out)
    return again, before, mtimes(out)


@pytest.fixture(scope="module")
def damaged_run(rerun, matrix_dir) -> tuple[MatrixRun, dict]:
    """web-fp32's program edited by one byte, then a run of a matrix whose first entry has a recipe naming a module
    the UNet lacks (a bad input only the compile finds): (the run, web-fp16's mtimes before it)."""
    out = matrix_dir / "out"
    program = out / "web-fp32" / "bundle" / "unet.onnx"
    content = bytearray(program.read_bytes())
    content[len(content) // 2] ^= 0xFF
    program.write_bytes(bytes(content))
    recipe = matrix_dir / "missing-module.toml"
    recipe.write_text('model = "moebius-tiny-trained"\ntarget = "web"\nquant = "fp32"\n\n'
                      '[float_modules]\nunet = ["denoiser.no_such_block"]\n')
    matrix = write_matrix(matrix_dir, f'target = "web"\nquant = "fp32"\nrecipe = "{recipe.name}"',
                          'target = "web"\nquant = "fp32"', 'target = "web"\nquant = "fp16"')
    before = mtimes(out / "web-fp16")
    return run_matrix(matrix, out), before


def test_a_matrix_runs_on_ray(first_run, matrix_dir):
    out = matrix_dir / "out"
    assert first_run.exit_code == 0, first_run.output
    assert [row["name"] for row in first_run.summary["entries"]] == list(ENTRIES)
    for name in ENTRIES:
        row = first_run.row(name)
        assert row["status"] == "passed" and not row["reused"] and row["error"] is None, row
        assert row["sqnr_db"]["unet"] != "inf" and row["sqnr_db"]["unet"] > 50 and row["bundle_mb"] > 0
        assert row["gates"] and set(row["gates"].values()) <= {"pass", "skipped"}
        assert row["unet_ms"] > 0  # onnxruntime runs web bundles here: the UNet was timed
        result = json.loads((out / name / "result.json").read_text())
        assert result["check"]["passed"] and result["compile"]["bundle"] == str(out / name / "bundle")
        assert (out / name / "report.html").read_text().startswith("<!doctype html>")
        open_bundle(out / name / "bundle")  # digest, schema, containment, every file's hash
        verified = runner.invoke(app, ["verify", str(out / name / "bundle")])
        assert verified.exit_code == 0, verified.output
    assert json.loads((out / "summary.json").read_text())["entries"] == first_run.summary["entries"]
    html = (out / "summary.html").read_text()
    assert all(f"<a href='{name}/report.html'>{name}</a>" in html for name in ENTRIES)
    assert not list(out.glob(".staging-*"))


def test_a_rerun_reuses_every_finished_entry(rerun):
    again, before, after = rerun
    assert again.exit_code == 0, again.output
    assert [(row["name"], row["status"], row["reused"]) for row in again.summary["entries"]] == [
        (name, "passed", True) for name in ENTRIES]
    assert again.summary["counts"]["reused"] == len(ENTRIES)
    changed = {path for path in after if before.get(path) != after[path]}
    assert changed == {"summary.json", "summary.html"}, changed  # no entry touched, nothing compiled


def test_a_damaged_entry_is_redone_and_the_others_reused(damaged_run, matrix_dir):
    run, fp16_before = damaged_run
    out = matrix_dir / "out"
    assert (run.row("web-fp32")["status"], run.row("web-fp32")["reused"]) == ("passed", False), run.row("web-fp32")
    assert (run.row("web-fp16")["status"], run.row("web-fp16")["reused"]) == ("passed", True)
    assert mtimes(out / "web-fp16") == fp16_before
    open_bundle(out / "web-fp32" / "bundle")  # the damaged program was replaced by a whole bundle
    assert not list(out.glob(".staging-*"))


def test_a_bad_entry_is_reported_and_the_rest_completes(damaged_run, matrix_dir):
    run, _ = damaged_run
    assert run.exit_code == 1
    assert [row["name"] for row in run.summary["entries"]] == [BAD, *ENTRIES]
    bad = run.row(BAD)
    assert bad["status"] == "error" and not bad["reused"]
    assert bad["error"] == f"{matrix_dir / 'missing-module.toml'}: unet has no module 'denoiser.no_such_block'"
    assert run.row("web-fp32")["status"] == "passed"  # built after the bad entry failed
    assert run.summary["counts"] == {"passed": 2, "gate failed": 0, "error": 1, "pending": 0, "reused": 1}
    assert not (matrix_dir / "out" / BAD).exists()
    assert BAD in (matrix_dir / "out" / "summary.html").read_text()


@pytest.mark.parametrize("body, expected", [
    ('target = "webgpu"\nquant = "fp32"', "entry 1: unknown target 'webgpu'"),
    ('target = "web"\nquant = "fp32"\nthreads = 2', "entry 1: unknown key 'threads'"),
    ('target = "web"\nquant = "int2"', "entry 1: target web has no quant mode 'int2'"),
    ('target = "web"\nquant = "fp32"\ncalib = "no-such-folder"', "entry 1: calib = 'no-such-folder'"),
], ids=["unknown-target", "unknown-key", "unknown-quant", "missing-calib"])
def test_a_bad_matrix_file_is_one_error_line(tmp_path, body, expected):
    matrix = write_matrix(tmp_path, body)
    out = tmp_path / "out"
    result = runner.invoke(app, ["matrix", str(matrix), "-o", str(out), "--ray"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {matrix}: {expected}"), result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_a_duplicate_entry_is_a_bad_matrix_file(tmp_path):
    matrix = write_matrix(tmp_path, 'target = "web"\nquant = "fp32"', 'target = "web"\nquant = "fp32"')
    result = runner.invoke(app, ["matrix", str(matrix), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"error: {matrix}: entry 2: duplicate of entry 1 (web-fp32)" in result.stderr
    assert not (tmp_path / "out").exists()
