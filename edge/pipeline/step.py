"""One sampling step between two UNet calls: guidance, the DDIM update, and the next UNet input.

The reference loop (edge.pipeline.loop) runs these functions between UNet calls. A runtime that keeps
tensors on its device (onnxruntime-web on WebGPU) runs them as a graph instead, `SamplingStep`, which a
backend ships in its bundles (the manifest's `step_graph`): no step reads the latents back to the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from edge.compile.graphs import PreparedGraph, TensorSpec
from edge.pipeline.schedule import ddim_update


def guided_noise(noise: torch.Tensor, guidance: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: (2, 4, s, s) [uncond, cond] -> (1, 4, s, s)."""
    noise_uncond, noise_cond = noise.chunk(2)
    return noise_uncond + guidance * (noise_cond - noise_uncond)


def unet_input(latents: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(1, 4, s, s) noisy latent, (1, 5, s, s) [mask, masked-image latent] -> (2, 9, s, s): uncond, cond rows."""
    return torch.cat([latents, known], dim=1).repeat(2, 1, 1, 1)


class SamplingStep(nn.Module):
    """latents, the UNet's noise, known, guidance, ᾱ, ᾱ next -> next latents and the next UNet input.

    With noise 0 and ᾱ = ᾱ next = 1 it is the identity on the latents: that call builds the first UNet input.
    """

    def forward(self, latents, noise, known, guidance, alpha, alpha_next):
        next_latents = ddim_update(latents, guided_noise(noise, guidance), alpha, alpha_next)
        return next_latents, unet_input(next_latents, known)


def step_graph_specs(latent_size: int) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """SamplingStep's inputs and outputs at a latent size; the scalars are (1,) float32."""
    side = (latent_size, latent_size)
    scalar = (1,)
    inputs = (TensorSpec("latents", (1, 4, *side)), TensorSpec("noise", (2, 4, *side)),
              TensorSpec("known", (1, 5, *side)), TensorSpec("guidance", scalar), TensorSpec("alpha", scalar),
              TensorSpec("alpha_next", scalar))
    outputs = (TensorSpec("next_latents", (1, 4, *side)), TensorSpec("unet_input", (2, 9, *side)))
    return inputs, outputs


def step_graph(latent_size: int) -> PreparedGraph:
    """SamplingStep as a graph to lower, with example inputs of its specs' shapes."""
    inputs, outputs = step_graph_specs(latent_size)
    generator = torch.Generator().manual_seed(0)
    examples = tuple(spec.example(generator) for spec in inputs[:3]) + tuple(
        torch.tensor([value]) for value in (2.0, 0.25, 0.5))  # guidance, ᾱ, ᾱ next
    return PreparedGraph("step", SamplingStep().eval(), examples, inputs, outputs)
