"""android_demo/app, as far as this machine can check it without android.jar, a dexer or the runtimes' AARs.

Its resources and AndroidManifest.xml are compiled and linked by Debian's aapt2 against Android's framework-res.apk
(API 29), with the package the Gradle build gives them. Its Java is compiled by javac against core's classes: every
android.*, ExecuTorch and LiteRT name stays unresolved, but every use of core's API (methods, fields, argument
lists, checked exceptions, the GraphRunner interface) is checked, and the check is shown to catch broken uses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ElementTree
from importlib.metadata import version
from pathlib import Path

import pytest

from edge.device.push import APP_BACKENDS, APP_PACKAGE
from tests.helpers import REPO

APP = REPO / "android_demo" / "app"
CORE = REPO / "android_demo" / "core"
SOURCES = APP / "src" / "main" / "java" / "dev" / "edge" / "inpaint"
AAPT2 = Path("/usr/bin/aapt2")  # Debian's aapt
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")  # Debian's android-framework-res: API 29
ORG_JSON = Path("/usr/share/java/com.android.json.jar")
ANDROID_NS = "{http://schemas.android.com/apk/res/android}"
# javac's raw diagnostics that only say an Android, ExecuTorch or LiteRT name is not on the class path here, or follow
# from one (an @Override of an unresolved superclass; a java.io exception of a call whose arguments are unresolved)
UNRESOLVED_HERE = re.compile(r"compiler\.err\.(doesnt\.exist|cant\.resolve(\.location(\.args)?)?): "
                             r"|compiler\.err\.method\.does\.not\.override\.superclass\b"
                             r"|compiler\.err\.except\.never\.thrown\.in\.try: java\.")

pytestmark = pytest.mark.skipif(not (AAPT2.is_file() and FRAMEWORK_RES.is_file()),
                                reason="needs Debian's aapt and android-framework-res (make test installs them)")


def gradle_setting(name: str) -> str:
    """A quoted or numeric setting of the app's build.gradle.kts (namespace, applicationId, minSdk)."""
    match = re.search(rf'^\s*{name} = "?([\w.]+)"?', (APP / "build.gradle.kts").read_text(), re.MULTILINE)
    assert match, f"build.gradle.kts sets no {name}"
    return match.group(1)


def run(*command) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def linked_app(tmp_path_factory) -> tuple[Path, Path]:
    """(the resources-only APK aapt2 links, the folder of the R.java it generates)."""
    work = tmp_path_factory.mktemp("android-app")
    run(AAPT2, "compile", "--dir", APP / "src" / "main" / "res", "-o", work / "resources.zip")
    # the Android Gradle plugin's manifest merger writes the namespace in as the package: so does this
    manifest = work / "AndroidManifest.xml"
    source = (APP / "src" / "main" / "AndroidManifest.xml").read_text()
    assert "package=" not in source, "the package belongs in build.gradle.kts (namespace), not the manifest"
    manifest.write_text(source.replace("<manifest ", f'<manifest package="{gradle_setting("namespace")}" ', 1))
    apk, generated = work / "app.apk", work / "generated"
    run(AAPT2, "link", "-o", apk, "-I", FRAMEWORK_RES, "--manifest", manifest, "--java", generated,
        "--min-sdk-version", gradle_setting("minSdk"), "--target-sdk-version", "29", work / "resources.zip")
    return apk, generated


@pytest.fixture(scope="module")
def core_classes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("core-classes")
    run("javac", "--release", "11", "-cp", ORG_JSON, "-d", out, *sorted((CORE / "src" / "main").rglob("*.java")))
    return out


def core_api_misuse(sources: Path, generated: Path, core_classes: Path, out: Path) -> list[str]:
    """javac's errors over the app's sources that are not just 'an Android/runtime name is missing here': every
    use of core's API that does not compile (flow analysis included, for core's checked exceptions)."""
    done = subprocess.run(["javac", "-XDrawDiagnostics", "-XDshould-stop.ifError=FLOW", "-Xmaxerrs", "100000",
                           "-cp", str(core_classes), "-d", str(out), *map(str, sorted(generated.rglob("*.java"))),
                           *map(str, sorted(sources.glob("*.java")))], capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if "compiler.err." in line]
    assert errors or done.returncode == 0, done.stderr
    return [line for line in errors if "dev.edge.core" in line or not UNRESOLVED_HERE.search(line)]


def test_resources_and_manifest_link_against_the_android_framework(linked_app):
    apk, _ = linked_app
    badging = run(AAPT2, "dump", "badging", apk)
    assert f"package: name='{APP_PACKAGE}'" in badging  # where edge android push puts bundles
    assert gradle_setting("applicationId") == gradle_setting("namespace") == APP_PACKAGE
    assert f"launchable-activity: name='{APP_PACKAGE}.MainActivity'" in badging
    assert f"sdkVersion:'{gradle_setting('minSdk')}'" in badging and "application-label:'edge inpaint'" in badging
    assert "uses-permission" not in badging  # own external files folder, system picker, MediaStore: none needed


def test_every_class_the_manifest_and_layouts_name_is_a_source_file():
    manifest = ElementTree.parse(APP / "src" / "main" / "AndroidManifest.xml")
    named = [element.get(f"{ANDROID_NS}name") for element in manifest.iter("activity")]
    named += [element.tag for layout in (APP / "src" / "main" / "res" / "layout").glob("*.xml")
              for element in ElementTree.parse(layout).iter() if element.tag.startswith(f"{APP_PACKAGE}.")]
    assert ".MainActivity" in named and f"{APP_PACKAGE}.MaskView" in named
    for name in named:
        simple = name.removeprefix(".").removeprefix(f"{APP_PACKAGE}.")
        source = SOURCES / f"{simple}.java"
        assert source.is_file(), f"{name} has no source file"
        assert re.search(rf"^public (final )?class {simple} extends \w+", source.read_text(), re.MULTILINE), source


def test_app_uses_only_core_api_that_exists(linked_app, core_classes, tmp_path):
    _, generated = linked_app
    assert core_api_misuse(SOURCES, generated, core_classes, tmp_path) == []


@pytest.mark.parametrize(("file", "original", "broken", "reported"), [
    ("InpaintJob.java", "MaskRule.binarize(", "MaskRule.binarise(", "binarise"),
    ("InpaintJob.java", ".inpaint(photo, mask, seed, this)", ".inpaint(photo, mask, this)", "inpaint"),
    ("InpaintJob.java", "catch (BundleException | GraphException", "catch (GraphException", "BundleException"),
    ("LiteRtGraph.java", "public Map<String, float[]> run(Map<String, float[]> inputs)",
     "public Map<String, float[]> run(Map<String, Object> inputs)", "dev.edge.core.GraphRunner"),
], ids=["misspelt-method", "wrong-arguments", "uncaught-core-exception", "adapter-not-a-graph-runner"])
def test_the_core_api_check_catches_a_broken_use(linked_app, core_classes, tmp_path, file, original, broken, reported):
    _, generated = linked_app
    sources = tmp_path / "sources"
    shutil.copytree(SOURCES, sources)
    text = (sources / file).read_text()
    assert original in text
    (sources / file).write_text(text.replace(original, broken, 1))
    problems = core_api_misuse(sources, generated, core_classes, tmp_path / "classes")
    assert any(file in line and reported in line for line in problems), problems


def test_graph_runner_adapters_cover_the_backends_edge_pushes():
    runners = (SOURCES / "GraphRunners.java").read_text()
    assert set(re.findall(r'case "(\w+)":', runners)) == set(APP_BACKENDS)
    targets = {tomllib.loads(profile.read_text())["backend"] for profile in (REPO / "targets").glob("*.toml")}
    assert set(APP_BACKENDS) <= targets
    assert "ExecuTorchGraph::open" in runners and "LiteRtGraph::open" in runners
    for adapter in ("ExecuTorchGraph", "LiteRtGraph"):
        assert re.search(rf"final class {adapter} implements GraphRunner\b", (SOURCES / f"{adapter}.java").read_text())


def test_app_runtimes_match_the_compiler_that_writes_the_bundles():
    """A .pte needs the ExecuTorch release that wrote it; the .tflite the LiteRT it was checked with here."""
    catalog = tomllib.loads((APP / "gradle" / "libs.versions.toml").read_text())
    assert catalog["versions"]["executorch"] == version("executorch")
    assert catalog["versions"]["litert"] == version("ai-edge-litert")
    libraries = catalog["libraries"]
    assert (libraries["executorch-android"]["group"], libraries["executorch-android"]["name"]) == \
        ("org.pytorch", "executorch-android")
    assert (libraries["litert"]["group"], libraries["litert"]["name"]) == ("com.google.ai.edge.litert", "litert")
