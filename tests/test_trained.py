"""moebius-tiny-trained: its shipped weights load strict and reproduce a stored output, and it inpaints the
held-out photographs of eval_data/ better than the same architecture with random weights.

Not asserted, because it is not true of this small model: filling the hole better than blurring its
surroundings in (edge.train.evaluate.blur_fill). Measured 2026-12-04, mean hole PSNR against the truth
over the 5 photographs: trained 13.05 dB, random 10.43 dB, blur fill 17.37 dB, flat mean colour 14.85 dB
(the model card says why)."""

from __future__ import annotations

import statistics

import pytest
import torch
from safetensors.torch import load_file

from edge.compile.calibration import find_pairs
from edge.compile.graphs import build_graphs
from edge.compile.prepare import default_sampling_plan
from edge.models import get_preset, load_unet, load_vae
from edge.models.unet import cfg_input_ids
from edge.models.weights import load_into, read_state_dict
from edge.pipeline.loop import TorchGraphs, inpaint_tensors, model_inputs, start_noise
from edge.train.evaluate import held_out_scores
from tests.helpers import REPO

TRAINED = "moebius-tiny-trained"
MARGIN_OVER_RANDOM_DB = 1.5  # measured: +2.6 dB on the mean
STORED = REPO / "tests" / "fixtures" / "trained_outputs.safetensors"
EVAL_DATA = REPO / "eval_data"


def stored_case_outputs() -> dict[str, torch.Tensor]:
    """What STORED holds (recorded once from the shipped weights; rerun this function to re-record): the UNet's
    noise on a seeded CFG batch at t = 500, and the fp32 pipeline's final latents and picture on the first
    eval_data pair, start-noise seed 0."""
    preset = get_preset(TRAINED)
    unet, vae = load_unet(preset), load_vae(preset)
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(2, 9, preset.latent_size, preset.latent_size, generator=generator)  # CFG batch
    with torch.no_grad():
        noise = unet(latent, torch.tensor([500]), cfg_input_ids(1))
    pair = find_pairs(EVAL_DATA)[0]
    image, mask = model_inputs(*pair.pictures(), preset.image_size)
    plan = default_sampling_plan(preset)
    result = inpaint_tensors(TorchGraphs(build_graphs(preset, unet, vae)), plan, image, mask,
                             start_noise((1, 4, preset.latent_size, preset.latent_size), seed=0))
    return {"input.latent": latent, "unet.noise": noise, "pipeline.latents": result.latents,
            "pipeline.image01": result.image01}


def test_shipped_weights_load_strict():
    preset = get_preset(TRAINED)
    assert preset.unet_weights.is_file() and (preset.vae_weights / "config.json").is_file()
    unet = load_unet("moebius-tiny")  # random, then the shipped file strictly into it (every key, every shape)
    load_into(unet, read_state_dict(preset.unet_weights), preset.unet_weights, "UNet")
    assert torch.equal(unet.state_dict()["diff_model.conv_out.conv_pw.weight"],
                       load_unet(TRAINED).state_dict()["diff_model.conv_out.conv_pw.weight"])
    vae = load_vae(TRAINED)
    assert vae.config.scaling_factor != get_preset("moebius-tiny").vae["scaling_factor"]  # measured, not copied


def test_shipped_weights_reproduce_the_stored_outputs():
    stored, now = load_file(STORED), stored_case_outputs()
    assert torch.equal(stored["input.latent"], now["input.latent"])
    for name in ("unet.noise", "pipeline.latents", "pipeline.image01"):
        scale = stored[name].abs().max().item()
        assert torch.allclose(now[name], stored[name], rtol=0, atol=1e-4 * scale), name


@pytest.fixture(scope="module")
def scores() -> dict[str, list[float]]:
    return held_out_scores(TRAINED, "moebius-tiny", find_pairs(EVAL_DATA))


def test_trained_model_inpaints_held_out_photographs_better_than_random_weights(scores):
    trained, random = scores["trained"], scores["random"]
    assert len(trained) == 5
    assert statistics.mean(trained) > statistics.mean(random) + MARGIN_OVER_RANDOM_DB, scores
    assert sum(t > r for t, r in zip(trained, random, strict=True)) >= 4, scores  # most photographs, not one
