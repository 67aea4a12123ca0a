"""Mixed-precision recipes: which modules of which graph a quantized compile keeps in float.

A recipe is a small TOML file, written by `edge sensitivity` or by hand, read by
`edge compile --recipe FILE`:

    model = "moebius-0.22b"
    target = "xnnpack"
    quant = "int8"

    [float_modules]
    unet = ["denoiser.up_blocks.0.attentions.2", "denoiser.conv_out"]

    [expected]            # informational: what the sensitivity run measured
    unet_sqnr_db = 14.1

Module names are dotted paths inside the graph module (`edge.compile.graphs`): the UNet graph's denoiser is
the checkpoint's `diff_model`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edge.compile.graphs import GRAPH_NAMES
from edge.errors import EdgeError


@dataclass(frozen=True)
class Recipe:
    model: str
    target: str
    quant: str
    float_modules: dict[str, tuple[str, ...]]  # graph name -> module paths kept float
    expected: dict[str, float] = field(default_factory=dict)

    def modules_for(self, graph: str) -> tuple[str, ...]:
        return self.float_modules.get(graph, ())

    def to_toml(self) -> str:
        lines = ["# mixed-precision recipe for edge compile --recipe (module paths kept float, per graph)",
                 f"model = {json.dumps(self.model)}", f"target = {json.dumps(self.target)}",
                 f"quant = {json.dumps(self.quant)}", "", "[float_modules]"]
        for graph, modules in self.float_modules.items():
            lines.append(f"{graph} = [" + ", ".join(json.dumps(m) for m in modules) + "]")
        if self.expected:
            lines += ["", "[expected]"] + [f"{key} = {value}" for key, value in self.expected.items()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "quant": self.quant,
                "float_modules": {g: list(m) for g, m in self.float_modules.items()}, "expected": self.expected}


def read_recipe(path: Path) -> Recipe:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise EdgeError(f"{path}: no such recipe file") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EdgeError(f"{path}: not a valid recipe ({err})") from err
    missing = [key for key in ("model", "target", "quant", "float_modules") if key not in raw]
    if missing:
        raise EdgeError(f"{path}: recipe lacks {', '.join(missing)}")
    modules = raw["float_modules"]
    unknown = [g for g in modules if g not in GRAPH_NAMES]
    if unknown:
        raise EdgeError(f"{path}: float_modules names unknown graph {unknown[0]!r} (graphs: {', '.join(GRAPH_NAMES)})")
    if not all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in modules.values()):
        raise EdgeError(f"{path}: float_modules must map each graph to a list of module paths")
    return Recipe(str(raw["model"]), str(raw["target"]), str(raw["quant"]),
                  {g: tuple(v) for g, v in modules.items()}, dict(raw.get("expected", {})))


def check_recipe(recipe: Recipe, path: Path, model: str, target: str, quant: str) -> None:
    """The recipe must be for this model, target and quant mode."""
    for what, wanted, have in (("model", model, recipe.model), ("target", target, recipe.target),
                               ("quant", quant, recipe.quant)):
        if wanted != have:
            raise EdgeError(f"{path}: recipe is for {what} {have!r}, this compile is {what} {wanted!r}")


def check_modules(recipe: Recipe, path: Path, graph: str, module_names: set[str]) -> None:
    """Every module the recipe names for this graph must exist in it."""
    absent = [m for m in recipe.modules_for(graph) if m not in module_names]
    if absent:
        raise EdgeError(f"{path}: {graph} has no module {absent[0]!r}")
