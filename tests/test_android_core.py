"""android_demo/core (plain Java, the loop an Android app runs) against the Python pipeline, on the JVM.

One module fixture compiles core and its JUnit 5 tests with javac (core alone with --release 11 and only Android's
org.json on the class path, so it uses nothing a phone lacks), writes golden vectors with the Python pipeline on the
tiny XNNPACK fp32 bundle (the held-out pair, every graph call of `inpaint_image` over the bundle's programs,
`edge inpaint --bundle`'s picture, Pillow's resize, blur and mask rule on odd cases) and runs the JUnit console
launcher once over them. Each test below then asserts that one JUnit class passed; the Java tests assert the numbers
(android_demo/core/src/test/java/dev/edge/core/).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edge.bundle.bundle import open_bundle
from edge.bundle.runner import BundleGraphs
from edge.cli import app
from edge.pipeline.loop import inpaint_image, paste_weight, start_noise
from edge.pipeline.pictures import binary_mask, open_picture, prepare_pair
from tests.helpers import REPO, manifest_json

CORE = REPO / "android_demo" / "core"
ORG_JSON = Path("/usr/share/java/com.android.json.jar")  # Debian's libandroid-json-java: Android's own org.json
JUNIT = Path("/usr/share/java/junit-platform-console-standalone.jar")  # Debian's junit5
PAIR = "flower"  # a held-out photograph of eval_data/ (256 x 256: the model's 128 is a real resize)
SEED = 7


class RecordingGraphs:
    """InpaintGraphs that pass every call on to the bundle's programs and keep its inputs and output."""

    def __init__(self, graphs):
        self.graphs, self.calls = graphs, []

    def _record(self, graph: str, run, *inputs):
        output = run(*inputs)
        self.calls.append((graph, inputs, output))
        return output

    def encode(self, image):
        return self._record("encoder", self.graphs.encode, image)

    def denoise(self, latent, time_features):
        return self._record("unet", self.graphs.denoise, latent, time_features)

    def decode(self, latent):
        return self._record("decoder", self.graphs.decode, latent)


def _save(folder: Path, name: str, array) -> str:
    """Raw little-endian values: .f32 float32, .f64 float64, .u8 bytes (pictures row-major, channels interleaved)."""
    array = np.asarray(array)
    suffix = {np.dtype("float32"): "f32", np.dtype("float64"): "f64", np.dtype("uint8"): "u8"}[array.dtype]
    file = f"{name}.{suffix}"
    array.astype(array.dtype.newbyteorder("<")).tofile(folder / file)
    return file


def write_goldens(bundle_path: Path, folder: Path) -> dict:
    """The Python pipeline's numbers for the Java tests: goldens.json names every file and size."""
    rng = np.random.default_rng(SEED)
    image = open_picture(REPO / "eval_data" / "images" / f"{PAIR}.png")
    mask = open_picture(REPO / "eval_data" / "masks" / f"{PAIR}.png", "mask")
    picture, binary = prepare_pair(image, mask)
    bundle = open_bundle(bundle_path)
    manifest = bundle.manifest
    latent = manifest.latent_size
    noise = start_noise((1, 4, latent, latent), SEED, manifest.sampling.noise_offset)
    recorder = RecordingGraphs(BundleGraphs(bundle))
    output = inpaint_image(recorder, bundle.sampling_plan(), manifest.image_size, image, mask, SEED,
                           manifest.sampling.noise_offset)
    calls = []
    for index, (graph, inputs, result) in enumerate(recorder.calls):
        calls.append({"graph": graph, "inputs": [_save(folder, f"call{index}.{graph}.input{j}", value.numpy())
                                                 for j, value in enumerate(inputs)],
                      "output": _save(folder, f"call{index}.{graph}.output", result.numpy())})
    cli_png = folder / "cli.png"
    done = CliRunner().invoke(app, ["inpaint", str(REPO / "eval_data" / "images" / f"{PAIR}.png"),
                                    str(REPO / "eval_data" / "masks" / f"{PAIR}.png"), "-o", str(cli_png),
                                    "--bundle", str(bundle_path), "--seed", str(SEED),
                                    "--noise-offset", str(manifest.sampling.noise_offset)])
    assert done.exit_code == 0, done.output
    # 203 x 157: downscaled to 128 x 128 and upscaled to 300 x 211 (README: the pass order of Pillow's resize)
    odd = picture.crop((13, 29, 13 + 203, 29 + 157))
    masks = {"rgb": Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8), "RGB"),
             "rgba_coloured": Image.fromarray(rng.integers(0, 256, (37, 23, 4), dtype=np.uint8), "RGBA"),
             "rgba_flat": Image.fromarray(np.dstack([np.full((37, 23, 3), (200, 30, 90), np.uint8),
                                                     rng.integers(0, 256, (37, 23), dtype=np.uint8)]), "RGBA")}
    goldens = {
        "bundle": str(bundle_path), "seed": SEED, "width": picture.width, "height": picture.height,
        "image": _save(folder, "image", np.asarray(picture)), "mask": _save(folder, "mask", np.asarray(mask)),
        "binary_mask": _save(folder, "binary_mask", np.asarray(binary)),
        "noise": _save(folder, "noise", noise.numpy()),
        "paste_weight": _save(folder, "paste_weight", paste_weight(binary)),
        "output": _save(folder, "output", np.asarray(output)),
        "cli_output": _save(folder, "cli_output", np.asarray(Image.open(cli_png).convert("RGB"))),
        "calls": calls,
        "resize": {"width": odd.width, "height": odd.height, "input": _save(folder, "resize.input", np.asarray(odd)),
                   "down": _save(folder, "resize.down", np.asarray(odd.resize((128, 128), Image.Resampling.LANCZOS))),
                   "up": _save(folder, "resize.up", np.asarray(odd.resize((300, 211), Image.Resampling.LANCZOS)))},
        "mask_rule": {name: {"width": m.width, "height": m.height, "channels": len(m.getbands()),
                             "input": _save(folder, f"mask_rule.{name}.input", np.asarray(m)),
                             "binary": _save(folder, f"mask_rule.{name}.binary", np.asarray(binary_mask(m)))}
                      for name, m in masks.items()},
    }
    (folder / "goldens.json").write_text(json.dumps(goldens, indent=1))
    return goldens


def javac(sources: list[Path], class_path: list[Path], out: Path, *options: str) -> None:
    done = subprocess.run(["javac", "-Xlint:all,-serial", "-Werror", *options, "-encoding", "UTF-8",
                           "-cp", ":".join(map(str, class_path)), "-d", str(out), *map(str, sources)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def java_sources(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.java"))


@pytest.fixture(scope="module")
def junit_results(compiled, native_runner, tmp_path_factory) -> dict[str, ElementTree.Element]:
    """Every JUnit test case of core, run once on the goldens: {ClassName.method: its <testcase> element}."""
    for needed in (ORG_JSON, JUNIT):
        assert needed.is_file(), f"{needed} is missing: make test installs it (apt-get install junit5 libandroid-json-java)"
    work = tmp_path_factory.mktemp("android-core")
    main_classes, test_classes, goldens, reports = (work / name for name in ("main", "test", "goldens", "reports"))
    for folder in (main_classes, test_classes, goldens):
        folder.mkdir()
    javac(java_sources(CORE / "src" / "main"), [ORG_JSON], main_classes, "--release", "11")
    javac(java_sources(CORE / "src" / "test"), [ORG_JSON, JUNIT, main_classes], test_classes)
    write_goldens(compiled("xnnpack", "fp32"), goldens)
    class_path = ":".join(map(str, (main_classes, test_classes, ORG_JSON)))
    done = subprocess.run(["java", f"-Dedge.goldens={goldens}", f"-Dedge.runner={native_runner}", "-jar", str(JUNIT),
                           "--class-path", class_path, "--scan-class-path", "--disable-banner", "--details=tree",
                           f"--reports-dir={reports}"], capture_output=True, text=True, timeout=600)
    cases = {f"{case.get('classname').rsplit('.', 1)[-1]}.{case.get('name').split('(')[0]}": case
             for report in reports.glob("*.xml") for case in ElementTree.parse(report).iter("testcase")}
    assert cases, done.stdout + done.stderr
    return cases


def assert_java_passed(results: dict[str, ElementTree.Element], test_class: str) -> None:
    """Every test of the JUnit class ran and passed (failures quote Java's assertion messages)."""
    cases = {name: case for name, case in results.items() if name.startswith(f"{test_class}.")}
    assert cases, f"no JUnit tests ran for {test_class}"
    failed = {name: (case.find("failure") if case.find("failure") is not None else case.find("error"))
              for name, case in cases.items()}
    problems = {name: element.get("message") for name, element in failed.items() if element is not None}
    skipped = [name for name, case in cases.items() if case.find("skipped") is not None]
    assert not problems and not skipped, (problems, skipped)


def java_measurements(results: dict[str, ElementTree.Element]) -> dict[str, float]:
    """The numbers the Java tests published (TestReporter entries, `- max_abs_...: value` in the XML report)."""
    found = {}
    for case in results.values():
        for out in case.iter("system-out"):
            for key, value in re.findall(r"- (max_abs_\w+|levels_\w+): ([-0-9.eE]+)", out.text or ""):
                found[key] = float(value)
    return found


def test_core_uses_nothing_a_phone_lacks():
    """core compiles for Java 11 with org.json alone (the fixture does it) and never imports android.* or java.awt."""
    for source in java_sources(CORE / "src" / "main"):
        text = source.read_text()
        assert not re.search(r"^import (android|java\.awt|javax\.imageio)\.", text, re.MULTILINE), source


def test_manifest_and_bundle_checks(junit_results):
    assert_java_passed(junit_results, "BundleTest")


def test_mask_rule_resize_and_model_inputs_match_pillow_and_torch(junit_results):
    assert_java_passed(junit_results, "PreprocessingTest")


def test_schedule_and_every_cfg_step_match_python(junit_results):
    assert_java_passed(junit_results, "ScheduleTest")


def test_paste_back_matches_python(junit_results):
    assert_java_passed(junit_results, "PasteBackTest")


def test_loop_trace_progress_and_cancel(junit_results):
    assert_java_passed(junit_results, "SamplerTest")


def test_java_loop_with_the_real_programs_matches_edge_inpaint(junit_results, compiled):
    assert_java_passed(junit_results, "NativeProgramsTest")
    measured = java_measurements(junit_results)
    tolerance = manifest_json(compiled("xnnpack", "fp32"))["end_to_end_tolerance"]["max_abs_image01"]
    assert measured["max_abs_image01_native"] <= tolerance and measured["levels_native_picture"] == 0, measured


def test_junit_launcher_is_where_make_test_installs_it():
    """The Makefile's apt prerequisite and this file name the same jars (a rename on either side fails here)."""
    makefile = (REPO / "Makefile").read_text()
    assert str(JUNIT) in makefile and str(ORG_JSON) in makefile
    assert shutil.which("javac"), "OpenJDK (javac) is missing"
