"""MATRIX.toml -> Matrix: the entries `edge matrix` compiles and checks, every one validated and hashed before any work.

    model = "moebius-tiny-trained"   # defaults of every entry: model, and optionally weights, vae, calib, eval
    eval = "eval_data"               # paths are relative to this file's folder

    [[entry]]
    target = "xnnpack"
    quant = "int8"
    recipe = "unet-mixed.toml"       # optional; an entry may also override any default

An entry's name is `<target>-<quant>`, plus `-<recipe stem>` with a recipe: its folder in the output, unique in
the file. Its input hash covers what its bundle and check depend on: edge's version, the target profile's file,
the quant mode, the recipe's bytes, the model preset, the UNet's and VAE's sha256 (or their random seed), and
the digests of the calibration and evaluation pairs. A rerun reuses a finished entry whose hash is unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tomllib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from edge.compile.calibration import DEFAULT_CALIB_DIR, find_pairs, pairs_digest
from edge.compile.recipe import check_recipe, read_recipe
from edge.errors import EdgeError
from edge.models import default_weights, get_preset, weights_identity
from edge.targets import load_target

DEFAULT_KEYS = ("model", "weights", "vae", "calib", "eval")  # top level, and overridable per entry
ENTRY_KEYS = ("target", "quant", "recipe", *DEFAULT_KEYS)
PATH_KEYS = ("weights", "vae", "calib", "eval", "recipe")


@dataclass(frozen=True)
class Entry:
    """One (target, quant, recipe) of the matrix, its paths absolute."""

    name: str
    target: str
    quant: str
    recipe: Path | None
    model: str
    weights: Path | None  # None: the preset's shipped weights, else seeded random ones
    vae: Path | None
    calib: Path | None  # None: calib_data/
    eval_dir: Path | None  # None: edge check's default, the held-out split of calib_data/
    input_hash: str

    def to_json(self) -> dict:
        return {"name": self.name, "target": self.target, "quant": self.quant, "recipe": _text(self.recipe),
                "model": self.model, "weights": _text(self.weights), "vae": _text(self.vae),
                "calib": _text(self.calib), "eval": _text(self.eval_dir), "input_hash": self.input_hash}


@dataclass(frozen=True)
class Matrix:
    source: Path
    entries: tuple[Entry, ...]


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def read_matrix(path: Path) -> Matrix:
    """The matrix in `path`; EdgeError (exit 2) naming the file and the first problem: TOML, unknown keys, an
    unknown model, target or quant mode, a recipe not for its entry, a missing file, two entries of one name."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError) as err:
        raise EdgeError(f"{path}: no such matrix file") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EdgeError(f"{path}: not valid TOML ({err})") from err
    _known_keys(raw, (*DEFAULT_KEYS, "entry"), f"{path}: ")
    tables = raw.get("entry")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise EdgeError(f"{path}: no [[entry]] tables (each with target and quant)")
    folder = path.resolve().parent
    defaults = _values(raw, DEFAULT_KEYS, folder, f"{path}: ")
    identity = functools.cache(lambda weights: weights_identity(weights).sha256 or "random")  # each file hashed once
    digest = functools.cache(lambda pairs_folder: pairs_digest(find_pairs(pairs_folder)))
    entries: dict[str, Entry] = {}
    for number, table in enumerate(tables, 1):
        where = f"{path}: entry {number}: "
        _known_keys(table, ENTRY_KEYS, where)
        values = {**defaults, **_values(table, ENTRY_KEYS, folder, where)}
        try:
            entry = _entry(values, identity, digest)
        except EdgeError as err:
            raise EdgeError(where + err.message) from err
        if entry.name in entries:
            first = list(entries).index(entry.name) + 1
            raise EdgeError(f"{where}duplicate of entry {first} ({entry.name}): each target, quant and recipe once")
        entries[entry.name] = entry
    return Matrix(path, tuple(entries.values()))


def _known_keys(table: dict, known: tuple[str, ...], where: str) -> None:
    unknown = [key for key in table if key not in known]
    if unknown:
        raise EdgeError(f"{where}unknown key '{unknown[0]}' (known: {', '.join(known)})")


def _values(table: dict, keys: tuple[str, ...], folder: Path, where: str) -> dict[str, str | Path]:
    """The table's string values; paths resolved against the matrix file's folder and required to exist."""
    values: dict[str, str | Path] = {}
    for key in (k for k in keys if k in table):
        value = table[key]
        if not isinstance(value, str) or not value:
            raise EdgeError(f"{where}{key} = {value!r}: must be a non-empty string")
        if key in PATH_KEYS:
            resolved = folder / Path(value).expanduser()
            if not resolved.exists():
                raise EdgeError(f"{where}{key} = {value!r}: {resolved} does not exist")
            values[key] = resolved
        else:
            values[key] = value
    return values


def _entry(values: dict, identity, digest) -> Entry:
    """An entry from its merged values (defaults, then the entry's own), checked, with its input hash."""
    for key in ("model", "target", "quant"):
        if key not in values:
            raise EdgeError(f"no {key} (give it in the entry" + (" or at the top of the file)" if key == "model" else ")"))
    model, recipe_path = values["model"], values.get("recipe")
    preset = get_preset(model)
    profile = load_target(values["target"])
    quant = profile.check_quant(values["quant"])
    if recipe_path is not None:
        check_recipe(read_recipe(recipe_path), recipe_path, model, profile.name, quant)
    unet_weights, vae_weights = default_weights(preset, values.get("weights"), values.get("vae"))
    calib, eval_dir = values.get("calib"), values.get("eval")
    inputs = {"edge": version("edge"), "target_profile": hashlib.sha256(profile.source.read_bytes()).hexdigest(),
              "quant": quant, "recipe": hashlib.sha256(recipe_path.read_bytes()).hexdigest() if recipe_path else None,
              "model": preset.name, "weights": identity(unet_weights), "vae": identity(vae_weights),
              "calib": digest(calib or DEFAULT_CALIB_DIR), "eval": digest(eval_dir or DEFAULT_CALIB_DIR)}
    input_hash = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    name = f"{profile.name}-{quant}" + (f"-{recipe_path.stem}" if recipe_path else "")
    return Entry(name, profile.name, quant, recipe_path, model, values.get("weights"), values.get("vae"), calib,
                 eval_dir, input_hash)
