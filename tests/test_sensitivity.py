"""`edge sensitivity` for XNNPACK on the tiny UNet: the layer groups, the quantizer it measures, and recipes.

The whole command (ranking every group, writing a recipe, compiling it) is backend-independent code, run end to
end with the LiteRT quantizer in tests/test_tflite.py; here the XNNPACK side: its simulator is the quantizer that
`edge compile` lowers with, and keeping groups float shows in its graph and its SQNR.
"""

from __future__ import annotations

import functools

import pytest
import torch
from typer.testing import CliRunner

from edge.backends import get_backend
from edge.cli import app
from edge.compile.calibration import DEFAULT_CALIB_DIR, find_pairs, split_pairs
from edge.compile.graphs import build_graphs, prepare_graph
from edge.compile.prepare import default_sampling_plan, load_models, prepare
from edge.compile.sensitivity import QuantizedSqnr, evaluation_samples, layer_groups
from edge.models import get_preset
from edge.targets import load_target

runner = CliRunner()
GOOD_RECIPE = """model = "moebius-tiny"
target = "xnnpack"
quant = "int8"

[float_modules]
unet = ["denoiser.conv_in"]
"""


def test_block_groups_cover_the_unet(tiny_unet, tiny_vae):
    unet_graph = build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae)["unet"].module
    groups = layer_groups(unet_graph, "block")
    assert len(groups) == 18 and len({g.name for g in groups}) == 18
    modules = dict(unet_graph.named_modules())
    assert all(name in modules for name in (g.name for g in groups))
    assert sum(g.weights for g in groups) > 0.5 * sum(p.numel() for p in unet_graph.parameters())
    assert len(layer_groups(unet_graph, "layer")) > len(groups)


def _traced_inside(node: torch.fx.Node, modules: tuple[str, ...]) -> bool:
    paths = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return any(p == m or p.startswith(m + ".") for p in paths for m in modules)


def _quantized_layers_inside(program: torch.fx.GraphModule, modules: tuple[str, ...]) -> int:
    """Convs and linears traced inside `modules` whose activation input comes through a dequantize op."""
    count = 0
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target not in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            continue
        source = node.args[0]
        count += _traced_inside(node, modules) and isinstance(source, torch.fx.Node) and "dequantize" in str(source.target)
    return count


def _int8_tables_inside(program: torch.fx.GraphModule, modules: tuple[str, ...]) -> int:
    """Batch matmuls traced inside `modules` whose constant operand (a relative-position table) is stored int8."""
    count = 0
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.bmm.default:
            continue
        table = node.args[1]
        stored = table.args[0] if "dequantize_per_tensor" in str(table.target) else table
        value = functools.reduce(getattr, stored.target.split("."), program) if stored.op == "get_attr" else None
        count += _traced_inside(node, modules) and value is not None and value.dtype == torch.int8
    return count


@pytest.fixture(scope="module")
def prepared():
    models = load_models("moebius-tiny-trained", None, None, 0)
    return prepare(models, default_sampling_plan(models.preset), *split_pairs(find_pairs(DEFAULT_CALIB_DIR)))


@pytest.mark.slow  # records the calibration pipeline
def test_xnnpack_simulator_keeps_chosen_groups_float_and_buys_back_sqnr(prepared):
    samples = evaluation_samples(prepared.held_out["unet"], prepared.plan.schedule.steps)
    unet = prepare_graph(prepared.graphs["unet"], load_target("xnnpack").rewrites, samples[0])
    simulate = get_backend("xnnpack").simulator(unet, "int8", prepared.calibration["unet"][::10])
    with torch.no_grad():
        sqnr = QuantizedSqnr(simulate, samples, [unet.module(*sample) for sample in samples])
    groups = layer_groups(unet.module, "block")
    up_blocks = tuple(g.name for g in groups if ".up_blocks." in g.name)
    quantized, mixed = simulate(()), simulate(up_blocks)
    assert _quantized_layers_inside(quantized, up_blocks) > 0 and _quantized_layers_inside(mixed, up_blocks) == 0
    assert _quantized_layers_inside(mixed, ("denoiser.down_blocks",)) > 0  # the rest stays quantized
    tables = sum(name.endswith(".attn2") for name, _ in unet.module.named_modules())  # one per Interactive-λ
    assert _int8_tables_inside(quantized, ("denoiser",)) == tables == 15  # and no folded constant
    assert _int8_tables_inside(mixed, up_blocks) == 0 and _int8_tables_inside(mixed, ("denoiser",)) == 6
    assert sqnr(tuple(g.name for g in groups)) > sqnr(()) + 10  # every group float: close to fp32


@pytest.mark.slow  # records the calibration pipeline
def test_xnnpack_int8_decoder_upsamples_in_int8(prepared):
    # the decoder's upsamplers are dense transposed convs (targets/xnnpack.toml), which the int8 mode quantizes
    calibration = prepared.calibration["decoder"][:2]
    decoder = prepare_graph(prepared.graphs["decoder"], load_target("xnnpack").rewrites, calibration[0])
    quantized = get_backend("xnnpack").simulator(decoder, "int8", calibration)(())
    transposed = [n for n in quantized.graph.nodes if n.target == torch.ops.aten.conv_transpose2d.input]
    assert len(transposed) == 3 and all("dequantize" in str(n.args[0].target) for n in transposed)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace('target = "xnnpack"', 'target = "coreml"'), "recipe is for target 'coreml'"),
    (lambda text: text.replace('unet = [', 'unet = ["denoiser.nowhere", '), "unet has no module 'denoiser.nowhere'"),
    (lambda text: text.replace("[float_modules]", "[float_modules]\nvae = []"), "unknown graph 'vae'"),
    (lambda text: text.replace("model = ", "modle = "), "recipe lacks model"),
])
def test_bad_recipes_are_one_line_errors(parity_file, pipeline_file, tmp_path, edit, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(GOOD_RECIPE))
    result = runner.invoke(app, ["compile", "--target", "xnnpack", "--model", "moebius-tiny", "--weights", str(parity_file),
                                 "--vae", str(pipeline_file), "--recipe", str(bad), "-o", str(tmp_path / "never")])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never*"))
