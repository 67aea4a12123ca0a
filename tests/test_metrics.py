"""Metric definitions (edge.quality.metrics, edge.quality.lpips) and gates (edge.quality.gates) on constructed cases."""

from __future__ import annotations

import math

import pytest
import torch

from edge.errors import EdgeError
from edge.quality.gates import evaluate_gates, resolve_gates
from edge.quality.lpips import crop_around, load_lpips
from edge.quality.metrics import ErrorSums, cfg_ratio, max_abs_over, psnr_db, sqnr_db, sqnr_db_over, ssim


def test_sqnr_and_psnr_follow_their_definitions():
    reference = torch.ones(3, 8, 8)
    assert sqnr_db(reference, reference) == math.inf
    assert sqnr_db(reference, reference * 1.1) == pytest.approx(20.0)  # noise 0.1^2 vs signal 1
    noisy = reference.clone()
    noisy[:, :2] -= 0.1  # MSE 0.01 on the top two rows, 0 elsewhere
    hole = torch.zeros(8, 8, dtype=torch.bool)
    hole[:2] = True
    assert psnr_db(reference, noisy, hole) == pytest.approx(20.0)
    assert psnr_db(reference, noisy, ~hole) == math.inf
    assert psnr_db(reference, noisy) == pytest.approx(20.0 + 10 * math.log10(4))


def test_error_sums_add_up_to_the_numbers_over_every_sample():
    """What edge check --ray merges: per-sample sums added give the SQNR and max abs of all samples at once."""
    generator = torch.Generator().manual_seed(0)
    references = [torch.randn(2, 4, 8, 8, generator=generator) for _ in range(5)]
    values = [r + 0.1 * k * torch.randn(r.shape, generator=generator) for k, r in enumerate(references)]
    parts = [ErrorSums.of(r, v) for r, v in zip(references, values)]
    total = sum(parts, ErrorSums())
    assert total.samples == 5 and parts[0].sqnr_db == math.inf  # sample 0 has no error
    assert total.sqnr_db == pytest.approx(sqnr_db_over(references, values), rel=1e-12)
    assert total.max_abs == max_abs_over(references, values)
    assert ErrorSums.of(torch.zeros(3), torch.ones(3)).sqnr_db == -math.inf  # no signal, some error


def test_ssim_is_one_for_equal_pictures_and_drops_where_they_differ():
    generator = torch.Generator().manual_seed(0)
    picture = torch.rand(3, 32, 32, generator=generator)
    assert ssim(picture, picture) == pytest.approx(1.0)
    damaged = picture.clone()
    damaged[:, :, 16:] = torch.rand(3, 32, 16, generator=generator)
    right = torch.zeros(32, 32, dtype=torch.bool)
    right[:, 20:] = True
    left = torch.zeros(32, 32, dtype=torch.bool)
    left[:, :10] = True
    assert ssim(picture, damaged, left) == pytest.approx(1.0)
    assert ssim(picture, damaged, right) < 0.2 < ssim(picture, damaged) < 0.9


def test_cfg_ratio_measures_the_guidance_kept():
    uncond, cond = torch.randn(4, 8, 8), torch.randn(4, 8, 8)
    reference = torch.stack([uncond, cond])
    halved = torch.stack([uncond, uncond + 0.5 * (cond - uncond)])
    assert cfg_ratio(reference, reference) == pytest.approx(1.0)
    assert cfg_ratio(reference, halved) == pytest.approx(0.5)


def test_lpips_loads_the_published_layout_and_ranks_distortions(lpips_folder):
    generator = torch.Generator().manual_seed(0)
    lpips = load_lpips(lpips_folder)
    picture = torch.rand(1, 3, 96, 96, generator=generator)
    slight = (picture + 0.02 * torch.randn(picture.shape, generator=generator)).clamp(0, 1)
    strong = (picture + 0.3 * torch.randn(picture.shape, generator=generator)).clamp(0, 1)
    assert float(lpips(picture, picture)) == 0
    assert 0 < float(lpips(picture, slight)) < float(lpips(picture, strong))


def test_lpips_weights_that_are_incomplete_are_named(tmp_path):
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp_path / "alexnet.pth")
    with pytest.raises(EdgeError, match=r"LPIPS weights lack features.0.bias"):
        load_lpips(tmp_path)
    with pytest.raises(EdgeError, match="no such LPIPS weights folder"):
        load_lpips(tmp_path / "absent")


def test_lpips_crop_covers_the_hole_with_a_margin():
    hole = torch.zeros(200, 300, dtype=torch.bool)
    hole[100:110, 10:20] = True
    rows, cols = crop_around(hole)
    assert rows.start <= 84 and rows.stop >= 126 and rows.stop - rows.start >= 64
    assert cols.start == 0 and cols.stop - cols.start >= 64


def test_gates_layer_profile_file_and_command_line(tmp_path):
    profile = {"unet_sqnr_db": 12, "cfg_ratio": [0.8, 1.25], "lpips": 0.1}
    overrides = tmp_path / "gates.toml"
    overrides.write_text('unet_sqnr_db = 20\nlpips = "off"\n')
    gates = resolve_gates(profile, "profile", overrides, ("cfg_ratio=0.9..1.1", "masked_psnr_db=30"))
    assert set(gates) == {"unet_sqnr_db", "cfg_ratio", "masked_psnr_db"}
    results = {r.metric: r.status for r in evaluate_gates(gates, {"unet_sqnr_db": 19.9, "cfg_ratio": [0.95, 1.05],
                                                                  "masked_psnr_db": None})}
    assert results == {"unet_sqnr_db": "fail", "cfg_ratio": "pass", "masked_psnr_db": "skipped"}
    assert evaluate_gates(gates, {"cfg_ratio": [0.85, 1.0]})[1].status == "fail"


@pytest.mark.parametrize("override, message", [
    ("unet_sqnr=3", "unknown gate metric 'unet_sqnr'"),
    ("unet_sqnr_db", "expected metric=threshold"),
    ("cfg_ratio=1.2", "is not low..high or \\[low, high\\]"),
    ("masked_psnr_db=high", "is not a number"),
])
def test_bad_gates_are_one_line_errors(override, message):
    with pytest.raises(EdgeError, match=message):
        resolve_gates({}, "profile", None, (override,))
