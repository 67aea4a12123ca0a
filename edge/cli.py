"""The `edge` command line. Parses arguments and prints; the work lives in library functions."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edge.errors import EdgeError

app = typer.Typer(help="Compile, check and profile the Moebius inpainting model for phones.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err_console = Console(stderr=True)
SCHEMA = 1
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _quiet_third_party_logs() -> None:
    # torchao (pulled in by executorch, imported by diffusers) warns about CUDA kernels it cannot load
    for name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _fail(err: EdgeError, debug: bool) -> None:
    if debug:
        raise err
    err_console.print(f"[red]error:[/red] {err.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


def _emit_json(payload: dict) -> None:
    sys.stdout.write(json.dumps({"schema": SCHEMA, **payload}, indent=1) + "\n")


def _open_picture(path: Path, what: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise EdgeError(f"{path}: no such {what} file")
    try:
        with Image.open(path) as picture:
            picture.load()
            return picture.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise EdgeError(f"{path}: not a readable image ({err.__class__.__name__})") from err


def _check_output(out: Path) -> None:
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise EdgeError(f"{out}: unsupported output format '{out.suffix}' (use {', '.join(PICTURE_SUFFIXES)})")
    if not out.parent.is_dir():
        raise EdgeError(f"{out}: folder {out.parent} does not exist")


def _save_atomically(picture, out: Path) -> None:
    """Write next to the destination, then rename: an interrupted run leaves no half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        picture.save(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@app.command()
def inpaint(
    image: Annotated[Path, typer.Argument(help="Picture to fill, any size.")],
    mask: Annotated[Path, typer.Argument(help="Same size as IMAGE; white (>= 128) = fill, black = keep.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Result picture (.png, .jpg, .webp, .bmp).")],
    model: Annotated[str, typer.Option(help="Preset: moebius-0.22b or moebius-tiny.")] = "moebius-0.22b",
    weights: Annotated[Optional[Path], typer.Option(help="UNet checkpoint: .bin, .safetensors or published folder.")] = None,
    vae: Annotated[Optional[Path], typer.Option(help="VAE: diffusers folder or state-dict file.")] = None,
    steps: Annotated[int, typer.Option(min=1, max=1000, help="DDIM steps before strength 0.99 drops the first.")] = 20,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of the start noise (and of random weights).")] = 0,
    noise_offset: Annotated[float, typer.Option(help="Per-channel start-noise offset (published: 0.0357).")] = 0.0357,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads (default: torch's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Fill the masked region of IMAGE with the fp32 torch reference pipeline."""
    try:
        import torch

        from edge.graphs import build_graphs
        from edge.models import get_preset, load_unet, load_vae, weights_identity
        from edge.pipeline import TorchGraphs, inpaint_image, prepare_pair, sampling_plan
        from edge.progress import progress_steps
        from edge.schedule import ddim_schedule

        if threads:
            torch.set_num_threads(threads)
        preset = get_preset(model)
        _check_output(out)
        picture, mask_picture = _open_picture(image, "image"), _open_picture(mask, "mask")
        try:
            prepare_pair(picture, mask_picture)
        except EdgeError as err:
            raise EdgeError(f"{mask}: {err.message}") from err
        unet_id, vae_id = weights_identity(weights, seed), weights_identity(vae, seed)
        for part, identity in (("UNet", unet_id), ("VAE", vae_id)):
            if identity.is_random:
                err_console.print(f"[bold yellow]WARNING: {part} has RANDOM weights (seed {seed}); "
                                  f"the output is noise, not an inpainting. Pass --{'weights' if part == 'UNet' else 'vae'}.[/]",
                                  soft_wrap=True)
        started = time.perf_counter()
        graphs = build_graphs(preset, load_unet(preset, weights, seed), load_vae(preset, vae, seed))
        plan = sampling_plan(preset.unet.time_features, ddim_schedule(steps), guidance)
        with progress_steps(f"inpaint {preset.name}", enabled=not as_json) as on_step:
            result = inpaint_image(TorchGraphs(graphs), plan, preset.image_size, picture, mask_picture,
                                   seed, noise_offset, on_step)
        _save_atomically(result, out)
    except EdgeError as err:
        _fail(err, debug)
    summary = {"output": str(out), "model": preset.name, "size": list(picture.size),
               "steps": plan.schedule.steps, "guidance": guidance, "seed": seed,
               "unet_weights": unet_id.to_json(), "vae_weights": vae_id.to_json(),
               "seconds": round(time.perf_counter() - started, 2)}
    if as_json:
        _emit_json({"command": "inpaint", **summary})
    else:
        typer.echo(f"wrote {out} ({picture.size[0]}x{picture.size[1]}, {preset.name}, "
                   f"{plan.schedule.steps} steps, {summary['seconds']} s; "
                   f"UNet {unet_id.describe()}, VAE {vae_id.describe()})")


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the model presets."""
    from edge.models import get_preset, preset_names

    rows = []
    for name in preset_names():
        preset = get_preset(name)
        rows.append({"name": name, "image_size": preset.image_size, "latent_size": preset.latent_size,
                     "widths": list(preset.unet.block_out_channels)})
    if as_json:
        _emit_json({"command": "models", "models": rows})
    else:
        for row in rows:
            typer.echo(f"{row['name']:14s} {row['image_size']}x{row['image_size']} images, "
                       f"latent {row['latent_size']}, widths {row['widths']}")


def main() -> None:
    _quiet_third_party_logs()
    app()
