"""`edge compile --target coreml` on moebius-tiny: every quant mode converted once per session, run through
edge's MIL interpreter, checked with `edge check`'s gates; the deployment-target option; bad input."""

from __future__ import annotations

import shutil

import pytest
import torch
from typer.testing import CliRunner

from edge.backends import get_backend
from edge.backends.coreml.backend import NOT_ON_NEURAL_ENGINE
from edge.backends.coreml.interpreter import load_package
from edge.bundle.bundle import open_bundle
from edge.cli import app
from edge.compile.graphs import build_graphs, prepare_graph
from edge.models import get_preset
from edge.quality.metrics import sqnr_db
from edge.targets import load_target
from tests.helpers import manifest_json, quant_modes, run_check_cli

# fp32 packages' parity with torch (>= 100 dB) is tests/test_coreml_interpreter.py's; these are the shipping modes
COREML_MODES = tuple(mode for mode in quant_modes("coreml") if mode != "fp32")
runner = CliRunner()


@pytest.fixture(scope="session")
def coreml_bundles(compiled):
    """The contract test's bundles (default options: iOS 17)."""
    return {mode: compiled("coreml", mode) for mode in COREML_MODES}


@pytest.fixture(scope="session")
def coreml_checks(coreml_bundles, tmp_path_factory, lpips_folder):
    folder = tmp_path_factory.mktemp("coreml-checks")
    return {mode: run_check_cli(path, folder / f"{mode}.html", "--lpips-weights", str(lpips_folder))
            for mode, path in coreml_bundles.items()}


def unet_ops(bundle) -> dict[str, int]:
    return manifest_json(bundle)["graphs"]["unet"]["report"]["ops"]


def mil_program(package):
    """The package's program as coremltools' own Python objects (read independently of edge's interpreter)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    return load(spec, spec.specificationVersion, model.weights_dir).functions["main"]


@pytest.mark.parametrize("mode", COREML_MODES)
def test_bundle_holds_three_packages_an_app_can_load(coreml_bundles, mode):
    bundle = open_bundle(coreml_bundles[mode])
    manifest = manifest_json(bundle.path)
    assert manifest["target"] == "coreml" and manifest["quant"] == mode and manifest["target_options"] == {}
    for name, graph in manifest["graphs"].items():
        assert graph["file"] == f"{name}.mlpackage"
        assert f"{name}.mlpackage/Manifest.json" in manifest["files"]  # every file of the package is hashed
        assert f"{name}.mlpackage/Data/com.apple.CoreML/model.mlmodel" in manifest["files"]
        report = graph["report"]
        assert report["minimum_deployment_target"] == "iOS17" and report["rank5_tensors"] == 0
        assert not set(report["ops"]) & NOT_ON_NEURAL_ENGINE, name
        package = load_package(bundle.graph_file(name))  # names and shapes as the manifest says
        assert list(package.input_names) == [spec["name"] for spec in graph["inputs"]]
        assert list(package.output_names) == [spec["name"] for spec in graph["outputs"]]
    assert manifest["graphs"]["unet"]["report"]["compute_units"] == "CPU_AND_NE"


def test_compression_shows_in_the_program_and_its_size(coreml_bundles):
    sizes = {mode: manifest_json(path)["graphs"]["unet"]["report"]["bytes"] for mode, path in coreml_bundles.items()}
    assert sizes["fp16"] > 1.5 * sizes["int8"]  # tiny's small weights (< 2048 values) and the timestep path stay fp16/fp32
    assert sizes["int8"] > sizes["palette6"] > sizes["palette4"]
    assert unet_ops(coreml_bundles["int8"]).get("constexpr_affine_dequantize", 0) > 50  # iOS 17 form
    assert unet_ops(coreml_bundles["palette4"]).get("constexpr_lut_to_dense", 0) > 50
    w8a8 = unet_ops(coreml_bundles["w8a8"])
    assert w8a8.get("quantize", 0) > 50 and w8a8.get("dequantize", 0) > 50
    assert manifest_json(coreml_bundles["w8a8"])["graphs"]["unet"]["report"]["calibration_samples"] == 8


def test_timestep_path_stays_fp32_in_the_fp16_program(coreml_bundles):
    from coremltools.converters.mil.mil import types

    operations = mil_program(open_bundle(coreml_bundles["fp16"]).graph_file("unet")).operations
    first = next(op for op in operations if any(getattr(v, "name", None) == "time_features" for v in op.inputs.values()))
    assert first.outputs[0].dtype == types.fp32 and first.op_type == "linear"
    assert any(op.outputs[0].dtype == types.fp16 for op in operations if op.op_type == "conv")


def test_fp16_packages_are_close_to_torch_but_rounded(coreml_bundles):
    for name, graph in manifest_json(coreml_bundles["fp16"])["graphs"].items():
        assert 40 <= graph["golden_sqnr_db"] < 100, name  # rounded to fp16 per op, not exact


def test_check_gates_every_mode_and_precision_orders_the_results(coreml_checks):
    for mode, run in coreml_checks.items():
        assert run.exit_code == 0, (mode, [g for g in run.payload["gates"] if g["status"] == "fail"])
        assert run.payload["target"] == "coreml" and any("interpreter" in n for n in run.payload["notices"])
    unet = {mode: run.payload["metrics"]["unet_sqnr_db"] for mode, run in coreml_checks.items()}
    assert unet["fp16"] > 40
    assert unet["fp16"] > unet["int8"] > unet["palette4"] and unet["palette6"] > unet["palette4"]


@pytest.fixture(scope="module")
def ios18_encoders(tiny_unet, tiny_vae, tmp_path_factory):
    """The tiny encoder lowered as `--ios 18` asks, into an empty conversion cache: palette4, palette4 again
    (converted by then), int8 (the same fp16 conversion compressed otherwise); {name: (conversion, package)}."""
    encoder = build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae)["encoder"]
    graph = prepare_graph(encoder, load_target("coreml").rewrites, encoder.example_inputs())
    cache = tmp_path_factory.mktemp("coreml-cache")
    lowered = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGE_CACHE", str(cache))
        for name, quant in (("palette4", "palette4"), ("palette4 again", "palette4"), ("int8", "int8")):
            result = get_backend("coreml").lower(graph, quant, [], (), {"ios": "18"})
            lowered[name] = (result.report["conversion"], result.payload)
    yield lowered, cache, graph
    for _, package in lowered.values():
        shutil.rmtree(package)


def test_palettes_are_per_tensor_on_ios17_and_per_grouped_channel_on_ios18(coreml_bundles, ios18_encoders):
    def palettes(package):
        return [op.lut.val for op in mil_program(package).operations if op.op_type == "constexpr_lut_to_dense"]

    ios17 = palettes(open_bundle(coreml_bundles["palette4"]).graph_file("encoder"))
    assert ios17 and all(lut.size == 16 for lut in ios17)  # one 16-entry palette per weight tensor
    lowered, _, _ = ios18_encoders
    ios18 = palettes(lowered["palette4"][1])  # one 16-entry palette per group of 16 output channels
    assert ios18 and all(lut.shape[-2] == 16 for lut in ios18) and max(lut.shape[0] for lut in ios18) > 1


def test_compressed_modes_compress_one_cached_conversion_and_do_not_depend_on_it(ios18_encoders):
    lowered, cache, graph = ios18_encoders
    inputs = graph.example_inputs
    assert [conversion for conversion, _ in lowered.values()] == ["converted", "cached", "cached"]
    assert len(list((cache / "coreml").glob("*.mlpackage"))) == 1 and not list((cache / "coreml").glob(".*"))
    fresh, cached = (load_package(lowered[name][1])(*inputs) for name in ("palette4", "palette4 again"))
    assert torch.equal(fresh, cached)  # the same program whether the conversion was cached or not
    with torch.no_grad():
        reference = graph.module(*inputs)
    assert sqnr_db(reference, load_package(lowered["int8"][1])(*inputs)) > 25  # int8 weights, not palettes


@pytest.mark.parametrize("args, expected", [
    (["--target", "coreml", "--ios", "16"], "target coreml: --ios 16 is not supported: choose one of 17, 18"),
    (["--target", "xnnpack", "--ios", "18"], "target xnnpack has no option --ios (it takes no options)"),
    (["--target", "coreml", "--quant", "int4"], "target coreml has no quant mode 'int4': choose one of fp16, fp32, int8"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, expected):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["compile", *args, "--model", "moebius-tiny", "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()  # one line, nothing else
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
