"""Reading checkpoints: the published `.bin`, a `.safetensors`, or a folder in the published layout.

Every user mistake (missing file, not a checkpoint, wrong keys or shapes) becomes one EdgeError
whose message names the file and the first few offending keys.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from edge.errors import EdgeError

CHECKPOINT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
SHOWN_KEYS = 5


def resolve_checkpoint(path: Path) -> Path:
    """A file as given, or the checkpoint inside a folder of the published layout.

    Accepted folders: one holding `diffusion_pytorch_model.{safetensors,bin}` (e.g.
    `weight/Moebius/pretrained/`), or the `weight/` root when it holds exactly one UNet variant.
    """
    path = Path(path)
    if not path.exists():
        raise EdgeError(f"{path}: no such file or folder")
    if path.is_file():
        return path
    for name in CHECKPOINT_NAMES:
        if (path / name).is_file():
            return path / name
    variants = sorted({p.parent for name in CHECKPOINT_NAMES for p in path.glob(f"Moebius/*/{name}")})
    if len(variants) == 1:
        return resolve_checkpoint(variants[0])
    if variants:
        listed = ", ".join(str(v.relative_to(path)) for v in variants)
        raise EdgeError(f"{path}: holds several checkpoints ({listed}); pass one of those folders")
    raise EdgeError(f"{path}: no {' or '.join(CHECKPOINT_NAMES)} in this folder")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded without unpickling arbitrary objects."""
    path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise EdgeError(f"{path}: not a safetensors checkpoint ({_first_line(err)})") from err
    if not (zipfile.is_zipfile(path) or _starts_like_pickle(path)):
        raise EdgeError(f"{path}: not a checkpoint (neither a PyTorch .bin nor a .safetensors file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise EdgeError(f"{path}: holds pickled objects other than tensors; refused (weights_only)") from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise EdgeError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgeError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return state


def select_prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix` with it stripped, or `state` itself when none has it.

    Lets one file carry several things, as the fixtures do (`state_dict.*`, `vae.*`).
    """
    selected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return selected or state


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, what: str) -> None:
    """Strict load with one readable error for missing, unexpected or mis-shaped keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if keys:
            more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
            problems.append(f"{label} {len(keys)}: {', '.join(keys[:SHOWN_KEYS])}{more}")
    if problems:
        raise EdgeError(f"{source}: not a {what} checkpoint: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _starts_like_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # pickle protocol 2+ opcode PROTO (torch's legacy format)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:160] if text else type(err).__name__
