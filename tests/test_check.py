"""`edge check` on the tiny bundles: real numbers, gates and exit codes, the report in Chromium."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.bundle.bundle import open_bundle
from edge.cli import app
from edge.models import load_unet
from edge.quality.check import evaluation_pairs
from tests.helpers import REPO, rewrite_manifest, run_check_cli

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")


def test_fp32_bundle_passes_every_gate(tiny_checks):
    run = tiny_checks["fp32"]
    assert run.exit_code == 0 and run.payload["passed"]
    assert {g["status"] for g in run.payload["gates"]} == {"pass"} and len(run.payload["gates"]) == 10
    metrics = run.payload["metrics"]
    assert metrics["unet_sqnr_db"] > 60 and metrics["encoder_sqnr_db"] > 50 and metrics["decoder_sqnr_db"] > 50
    assert metrics["masked_psnr_db"] == "inf" or metrics["masked_psnr_db"] > 40
    assert metrics["unmasked_max_abs"] == 0  # paste-back copies every pixel outside the blurred mask
    assert 0.99 < metrics["cfg_ratio"][0] <= metrics["cfg_ratio"][1] < 1.01
    assert metrics["lpips"] is not None and metrics["lpips"] < 0.01
    steps = run.payload["unet_steps"]
    assert [s["timestep"] for s in steps] == list(range(900, -1, -50))
    assert run.payload["evaluation"]["pairs"] == ["rocket"]  # the held-out pair, never calibrated on
    assert run.payload["graphs"]["unet"]["samples"] == 19 and run.payload["graphs"]["encoder"]["samples"] == 2


def test_quantized_bundles_pass_their_gates_and_are_measured_in_the_expected_order(tiny_checks):
    metrics = {mode: run.payload["metrics"] for mode, run in tiny_checks.items()}
    assert metrics["int8"]["masked_psnr_db"] < metrics["int8-dynamic"]["masked_psnr_db"]
    assert metrics["fp32"]["unet_sqnr_db"] > metrics["int8-dynamic"]["unet_sqnr_db"] > metrics["int8"]["unet_sqnr_db"] > 5
    assert metrics["int8"]["unet_sqnr_db"] > metrics["int4"]["unet_sqnr_db"] > 5  # 4-bit linears cost the UNet
    assert abs(metrics["int4"]["encoder_sqnr_db"] - metrics["int8"]["encoder_sqnr_db"]) < 1  # the same int8 VAE
    for mode in ("int8", "int8-dynamic", "int4"):
        run = tiny_checks[mode]  # the gates of targets/xnnpack.toml were derived from these trained weights
        assert run.exit_code == 0, [g for g in run.payload["gates"] if g["status"] == "fail"]
        assert metrics[mode]["masked_psnr_db"] < metrics[mode]["psnr_db"]  # the error lives in the hole
        assert metrics[mode]["unmasked_max_abs"] == 0
        # static int8 inflates the guidance (gate up to 2.12); int4's 4-bit UNet more (2.44 measured, gate 2.62)
        assert 0.5 < metrics[mode]["cfg_ratio"][0] <= metrics[mode]["cfg_ratio"][1] < (3 if mode == "int4" else 2)
        steps = run.payload["unet_steps"]
        assert min(s["sqnr_db"] for s in steps) == metrics[mode]["unet_worst_step_sqnr_db"]


def _corrupt_unet_weight(bundle: Path) -> None:
    """Scale one attention projection inside unet.pte by -3 and re-hash: what a broken lowering would ship."""
    weight = load_unet(open_bundle(bundle).manifest.model).state_dict()["diff_model.down_blocks.0.attentions.0.proj_in.weight"]
    original = weight.contiguous().numpy().tobytes()
    payload = (bundle / "unet.pte").read_bytes()
    assert payload.count(original) == 1
    (bundle / "unet.pte").write_bytes(payload.replace(original, (weight * -3).contiguous().numpy().tobytes()))
    digest = hashlib.sha256((bundle / "unet.pte").read_bytes()).hexdigest()
    rewrite_manifest(bundle, lambda manifest: manifest["files"].__setitem__("unet.pte", digest))


def test_bundle_with_corrupted_weights_fails_the_gate(tiny_bundles, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundles["fp32"], broken)
    _corrupt_unet_weight(broken)
    run = run_check_cli(broken, tmp_path / "broken.html")
    assert run.exit_code == 1 and not run.payload["passed"]
    statuses = {g["metric"]: g["status"] for g in run.payload["gates"]}
    assert statuses["unet_sqnr_db"] == "fail" and statuses["encoder_sqnr_db"] == "pass"
    assert run.payload["metrics"]["unet_sqnr_db"] < 30


def test_gates_are_overridden_by_file_and_command_line(tiny_bundles, tmp_path):
    gates_file = tmp_path / "gates.toml"
    gates_file.write_text('masked_ssim = "off"\nunet_sqnr_db = 200\n')
    run = run_check_cli(tiny_bundles["fp32"], tmp_path / "r.html", "--gates", str(gates_file), "--gate", "lpips=off",
                        "--gate", "cfg_ratio=0.5..2")
    gates = {g["metric"]: g for g in run.payload["gates"]}
    assert run.exit_code == 1 and gates["unet_sqnr_db"]["status"] == "fail" and gates["unet_sqnr_db"]["threshold"] == ">= 200"
    assert "masked_ssim" not in gates and "lpips" not in gates and gates["cfg_ratio"]["threshold"] == "0.5..2"
    assert gates["masked_lpips"]["status"] == "skipped"  # no --lpips-weights: skipped, with a notice
    assert any("LPIPS skipped" in notice for notice in run.payload["notices"])


def test_report_renders_in_headless_chromium(tiny_checks):
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    report = tiny_checks["int8"].report
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        charts = page.locator("svg polyline").count()
        gate_rows = page.locator("table").first.locator("tr").count()
        title = page.title()
        browser.close()
    assert [alt for alt, _, _ in images] == ["rocket input", "rocket mask", "rocket fp32 torch", "rocket xnnpack int8",
                                            "rocket |difference| x8"]
    assert all(complete and width > 0 for _, complete, width in images)  # decoded, not broken links
    assert charts >= 4 and gate_rows == 1 + len(tiny_checks["int8"].payload["gates"])
    assert title == f"edge check {'PASS' if tiny_checks['int8'].payload['passed'] else 'FAIL'}"
    assert requests == [report.as_uri()]  # self-contained: nothing else fetched


def test_held_out_default_and_calibration_pairs_skipped(tiny_bundles):
    bundle = open_bundle(tiny_bundles["int8"])
    pairs, evaluation, notices = evaluation_pairs(None, bundle)
    assert [p.name for p in pairs] == ["rocket"] and not notices
    pairs, _, notices = evaluation_pairs(REPO / "calib_data", bundle)
    assert [p.name for p in pairs] == ["rocket"] and "astronaut, chelsea, coffee" in notices[0]


@pytest.mark.parametrize("arguments, message", [
    (["--gate", "sharpness=3"], "unknown gate metric 'sharpness'"),
    (["--eval", "/nonexistent"], "/nonexistent: no such calibration folder"),
    (["--lpips-weights", "/nonexistent"], "no such LPIPS weights folder"),
    (["--report", "/nonexistent/r.html"], "folder /nonexistent does not exist"),
])
def test_usage_errors_exit_2_with_one_line(tiny_bundles, arguments, message):
    result = runner.invoke(app, ["check", str(tiny_bundles["int8"]), *arguments])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_wrong_reference_weights_and_damaged_bundles_exit_2(tiny_bundles, pipeline_file, tmp_path):
    result = runner.invoke(app, ["check", str(tiny_bundles["int8"]), "--weights", str(pipeline_file)])
    assert result.exit_code == 2 and "is not the weights this bundle was built from" in result.output
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_bundles["int8"], damaged)
    (damaged / "decoder.pte").write_bytes(b"garbage")
    result = runner.invoke(app, ["check", str(damaged)])
    assert result.exit_code == 2 and "decoder.pte does not match its sha256" in result.output
    assert not list(tmp_path.glob("*report*"))  # nothing written
