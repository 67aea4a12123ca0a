"""`edge sensitivity` ranks the tiny UNet's layer groups; its recipe compiles and buys back SQNR."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.compile.graphs import build_graphs
from edge.compile.recipe import read_recipe
from edge.compile.sensitivity import layer_groups
from edge.models import get_preset, load_unet, load_vae

runner = CliRunner()
GOOD_RECIPE = """model = "moebius-tiny"
target = "xnnpack"
quant = "int8"

[float_modules]
unet = ["denoiser.conv_in"]
"""


@pytest.fixture(scope="session")
def tiny_sensitivity(tmp_path_factory, parity_file, pipeline_file):
    """One block-granularity run on the tiny model."""
    folder = tmp_path_factory.mktemp("sensitivity")
    result = runner.invoke(app, ["sensitivity", "--model", "moebius-tiny", "--weights", str(parity_file), "--vae",
                                 str(pipeline_file), "--granularity", "block", "--calibration-samples", "2",
                                 "--float-fraction", "0.2", "-o", str(folder / "ranking.json"), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), folder / "ranking.recipe.toml", folder


def test_ranking_covers_every_group_and_is_sorted_by_gain(tiny_sensitivity, parity_file, pipeline_file):
    payload, _, folder = tiny_sensitivity
    assert json.loads((folder / "ranking.json").read_text()) == payload
    unet_graph = build_graphs(get_preset("moebius-tiny"), load_unet("moebius-tiny", parity_file),
                              load_vae("moebius-tiny", pipeline_file))["unet"].module
    groups = layer_groups(unet_graph, "block")
    ranking = payload["ranking"]
    assert sorted(r["group"] for r in ranking) == sorted(g.name for g in groups) and len(groups) == 18
    gains = [r["gain_db"] for r in ranking]
    assert gains == sorted(gains, reverse=True)
    quantized = payload["all_quantized_sqnr_db"]
    for row in ranking:  # quantizing one group alone costs less than quantizing all of them
        assert row["only_db"] > quantized and row["gain_db"] == pytest.approx(row["without_db"] - quantized, abs=0.02)
    assert sum(r["weights"] for r in ranking) > 0.5 * sum(p.numel() for p in unet_graph.parameters())


def test_recipe_keeps_the_groups_that_buy_back_the_most_sqnr(tiny_sensitivity):
    """The recipe floats groups that gain, within the float budget, and the quantizer it was measured with (the
    one `edge compile` lowers with) says that buys back SQNR. Compiling a recipe end to end is the backend-independent path of
    `edge compile --recipe`; tests/test_tflite.py compiles one."""
    payload, recipe_path, _ = tiny_sensitivity
    recipe = read_recipe(recipe_path)
    assert (recipe.model, recipe.target, recipe.quant) == ("moebius-tiny", "xnnpack", "int8")
    chosen = recipe.modules_for("unet")
    assert chosen and recipe.expected["unet_sqnr_db"] > payload["all_quantized_sqnr_db"] + 1
    rows = {row["group"]: row for row in payload["ranking"]}  # within the --float-fraction 0.2 budget
    assert all(rows[module]["gain_db"] > 0 for module in chosen)
    assert sum(rows[module]["weights"] for module in chosen) <= 0.2 * sum(row["weights"] for row in rows.values())


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
