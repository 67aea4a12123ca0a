"""A bundle is a trust boundary: every hostile or damaged bundle is refused with one line, before anything in it
is loaded, and nothing in it is changed; random damage never gets a traceback or a silent pass."""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge.cli import app
from tests.helpers import REPO, rewrite_manifest

runner = CliRunner()
OUTSIDE = "outside.pte"  # a file next to the bundle, which a hostile manifest or link points at


@pytest.fixture(scope="module")
def fp32_bundle(compiled) -> Path:
    """The session's tiny XNNPACK fp32 bundle (the tests work on copies)."""
    return compiled("xnnpack", "fp32")


def _files(bundle: Path) -> dict[str, bytes]:
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def _rehash(bundle: Path, name: str) -> None:
    digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    rewrite_manifest(bundle, lambda m: m["files"].__setitem__(name, digest))


def _truncate(bundle: Path, name: str) -> None:
    path = bundle / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    _rehash(bundle, name)


def _symlink_out(bundle: Path) -> None:
    (bundle / "unet.pte").rename(bundle.parent / OUTSIDE)
    (bundle / "unet.pte").symlink_to(bundle.parent / OUTSIDE)


def _raw_manifest(bundle: Path, payload: bytes) -> None:
    (bundle / "manifest.json").write_bytes(payload)
    (bundle / "manifest.sha256").write_text(f"{hashlib.sha256(payload).hexdigest()}  manifest.json\n")


def _flip_manifest_byte(bundle: Path) -> None:
    payload = bytearray((bundle / "manifest.json").read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (bundle / "manifest.json").write_bytes(bytes(payload))


def _manifest_symlink(bundle: Path) -> None:
    (bundle / "manifest.json").rename(bundle.parent / "manifest.json")
    (bundle / "manifest.json").symlink_to(bundle.parent / "manifest.json")


def _nan_time_features(bundle: Path) -> None:
    table = np.fromfile(bundle / "time_features.f32", dtype="<f4")
    table[3] = np.nan
    table.tofile(bundle / "time_features.f32")
    _rehash(bundle, "time_features.f32")


# (case, how the bundle is damaged, the command, what its one error line says)
HOSTILE = [
    ("manifest_byte_flipped", _flip_manifest_byte, "verify", "manifest.json: does not match manifest.sha256"),
    ("digest_missing", lambda b: (b / "manifest.sha256").unlink(), "verify", "no manifest.sha256"),
    ("manifest_is_a_symlink", _manifest_symlink, "verify", "manifest.json: must be a regular file inside the bundle"),
    ("program_path_escapes", lambda b: rewrite_manifest(b, lambda m: m["graphs"]["unet"].__setitem__("file", f"../{OUTSIDE}")),
     "inpaint", f"'graphs.unet.file' = '../{OUTSIDE}' is not a relative path inside the bundle"),
    ("listed_file_absolute", lambda b: rewrite_manifest(b, lambda m: m["files"].__setitem__("/etc/hostname", "0" * 64)),
     "verify", "'files./etc/hostname' = '/etc/hostname' is not a relative path inside the bundle"),
    ("program_symlinked_out", _symlink_out, "inpaint", "unet.pte resolves outside the bundle"),
    ("file_list_empty", lambda b: rewrite_manifest(b, lambda m: m.__setitem__("files", {})), "verify",
     "manifest 'files' does not list encoder.pte (every file read must be hashed)"),
    ("target_is_a_path", lambda b: rewrite_manifest(b, lambda m: m.__setitem__("target", "../../etc/x")), "verify",
     "unknown target '../../etc/x'"),
    ("manifest_not_utf8", lambda b: _raw_manifest(b, b"\xff\xfe{}"), "verify", "manifest.json: not UTF-8 text"),
    ("manifest_not_an_object", lambda b: _raw_manifest(b, b"[1, 2]"), "verify", "manifest.json: the manifest is not a JSON object"),
    ("key_missing", lambda b: rewrite_manifest(b, lambda m: m.pop("sampling")), "verify", "manifest lacks 'sampling'"),
    ("wrong_type", lambda b: rewrite_manifest(b, lambda m: m.__setitem__("image_size", "128")), "verify",
     "manifest 'image_size' is str, expected int"),
    ("guidance_nan", lambda b: rewrite_manifest(b, lambda m: m["sampling"].__setitem__("guidance", math.nan)),
     "inpaint", "manifest 'sampling.guidance' is not a finite number"),
    ("noise_offset_infinite", lambda b: rewrite_manifest(b, lambda m: m["sampling"].__setitem__("noise_offset", math.inf)),
     "verify", "manifest 'sampling.noise_offset' is not a finite number"),
    ("cfg_batch_reversed", lambda b: rewrite_manifest(b, lambda m: m["sampling"].__setitem__("unet_batch", ["cond", "uncond"])),
     "inpaint", "manifest 'sampling.unet_batch' must be [\"uncond\", \"cond\"]"),
    ("guidance_out_of_range", lambda b: rewrite_manifest(b, lambda m: m["sampling"].__setitem__("guidance", 1e6)),
     "inpaint", "manifest 'sampling.guidance' must be in 0..30"),
    ("latent_size_inconsistent", lambda b: rewrite_manifest(b, lambda m: m.__setitem__("latent_size", 15)),
     "verify", "manifest 'image_size' must be 8 x latent_size"),
    ("quant_unknown_to_the_target", lambda b: rewrite_manifest(b, lambda m: m.__setitem__("quant", "int2")), "verify",
     "the manifest says quant 'int2', target xnnpack has fp32, int8, int8-dynamic, int4"),
    ("schema_unknown", lambda b: rewrite_manifest(b, lambda m: m.__setitem__("schema", 99)), "verify", "schema 99, this edge reads schema 1"),
    ("program_truncated_and_rehashed", lambda b: _truncate(b, "unet.pte"), "verify",
     "unet.pte: xnnpack cannot load this program ([program.cpp:114] File size is too small."),
    ("golden_truncated_and_rehashed", lambda b: _truncate(b, "golden.safetensors"), "verify",
     "golden.safetensors: not a readable safetensors file"),
    ("time_features_nan_and_rehashed", _nan_time_features, "inpaint", "time_features.f32: holds non-finite values"),
    ("time_features_truncated_and_rehashed", lambda b: _truncate(b, "time_features.f32"), "inpaint",
     "time_features.f32: 202 values, the manifest says (19, 32)"),
]


@pytest.mark.parametrize("case, damage, command, expected", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_bundle_is_refused_with_one_line(fp32_bundle, tmp_path, case, damage, command, expected):
    bundle = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, bundle)
    damage(bundle)
    before = _files(bundle)
    out = tmp_path / "out.png"
    arguments = {"verify": ["verify", str(bundle)],
                 "inpaint": ["inpaint", str(REPO / "eval_data" / "images" / "flower.png"),
                             str(REPO / "eval_data" / "masks" / "flower.png"), "-o", str(out), "--bundle", str(bundle)]}
    result = runner.invoke(app, arguments[command])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert _files(bundle) == before and not out.exists()


def test_unlisted_file_inside_a_folder_artifact_is_refused(compiled, tmp_path):
    """A Core ML program is a folder (.mlpackage): a file slipped into it is read by the runtime, so it must be
    listed and hashed like every other."""
    bundle = tmp_path / "bundle"
    shutil.copytree(compiled("coreml", "fp16"), bundle)
    package = json.loads((bundle / "manifest.json").read_text())["graphs"]["unet"]["file"]
    (bundle / package / "Data" / "extra.bin").write_bytes(b"\x00" * 16)
    result = runner.invoke(app, ["verify", str(bundle)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {bundle}: {package}/Data/extra.bin is inside {package} but not listed in the manifest"


FUZZ_CASES = 24


def test_random_damage_never_passes_silently_or_crashes(fp32_bundle, tmp_path):
    """Seeded byte flips and truncations over every file of a tiny bundle: `edge verify` ends in exit 0 with the
    bundle intact (the damage hit nothing that is read), or exit 1 naming the file that fails its hash, or exit 2
    with one error line; never a traceback."""
    bundle = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, bundle)
    pristine = _files(bundle)
    generator = random.Random(20261204)
    outcomes = []
    for _ in range(FUZZ_CASES):
        name = generator.choice(sorted(pristine))
        payload = bytearray(pristine[name])
        if generator.random() < 0.5:
            for _ in range(generator.randint(1, 4)):
                payload[generator.randrange(len(payload))] ^= 1 << generator.randrange(8)
        else:
            del payload[generator.randrange(len(payload)):]
        (bundle / name).write_bytes(bytes(payload))
        result = runner.invoke(app, ["verify", str(bundle)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        if result.exit_code == 0:
            assert name == "manifest.sha256" and bytes(payload).split(b" ")[0] == pristine[name].split(b" ")[0]
        elif result.exit_code == 1:
            assert f"FAIL {name} does not match its sha256" in result.stdout and "FAILED" in result.stdout, result.output
        else:
            assert result.exit_code == 2, result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        outcomes.append(result.exit_code)
        (bundle / name).write_bytes(pristine[name])
    assert _files(bundle) == pristine
    assert {1, 2} <= set(outcomes)  # the damage reached both the hashes and the manifest's digest


def test_library_and_native_log_lines_stay_off_the_terminal(fp32_bundle):
    """ExecuTorch's C++ runtime, torch and torchao write to the terminal when loaded; edge shows them only under
    `edge --verbose` (a real process: the native lines go to file descriptor 2, which an in-process runner
    cannot see)."""
    command = [sys.executable, "-c", "from edge.cli import main; main()", "verify", str(fp32_bundle)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("(self-check ran)"), result.stdout
    assert result.stderr == ""
