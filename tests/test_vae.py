"""The VAE: diffusers AutoencoderKL, loaded from the published folder layout, and its two graphs."""

from __future__ import annotations

import json

import pytest
import torch

from edge.compile.graphs import DecoderGraph, EncoderGraph
from edge.errors import EdgeError
from edge.models import load_vae


@pytest.mark.parametrize("safe", [True, False])
def test_published_folder_layout_loads(tmp_path, tiny_vae, safe):
    folder = tmp_path / "weight" / "vae"
    tiny_vae.save_pretrained(folder, safe_serialization=safe)  # config.json + diffusion_pytorch_model.*
    loaded = load_vae("moebius-tiny", folder)
    assert loaded.config.scaling_factor == 0.13025
    for (name, ours), (_, theirs) in zip(loaded.state_dict().items(), tiny_vae.state_dict().items(), strict=True):
        assert torch.equal(ours, theirs), name


def test_broken_config_is_one_error(tmp_path, tiny_vae):
    folder = tmp_path / "vae"
    tiny_vae.save_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(EdgeError, match="config.json: not valid JSON"):
        load_vae("moebius-tiny", folder)
    config = json.loads(json.dumps(dict(tiny_vae.config)))
    config["latent_channels"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EdgeError, match="VAE checkpoint: wrong shape"):
        load_vae("moebius-tiny", folder)


def test_graphs_are_the_scaled_mean_and_the_unit_image(tiny_vae, pipeline_case):
    image = pipeline_case["input.image"]
    with torch.no_grad():
        mean = tiny_vae.encode(image).latent_dist.mean
        assert torch.allclose(EncoderGraph(tiny_vae)(image), mean * 0.13025, atol=1e-6)
        latent = pipeline_case["output.latents"]
        decoded = (tiny_vae.decode(latent / 0.13025).sample + 1) / 2
        assert torch.allclose(DecoderGraph(tiny_vae)(latent), decoded.clamp(0, 1), atol=1e-6)
