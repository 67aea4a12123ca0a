"""The reference pipeline: schedule and sampling loop against the published pipeline's numbers."""

from __future__ import annotations

import pytest
import torch

from edge.compile.graphs import build_graphs
from edge.models import get_preset
from edge.pipeline.loop import TorchGraphs, inpaint_tensors, sampling_plan
from edge.pipeline.schedule import ddim_schedule, reference_scheduler


@pytest.fixture(scope="module")
def tiny_graphs(tiny_unet, tiny_vae):
    return TorchGraphs(build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae))


def test_schedule_is_19_steps_from_900(pipeline_case):
    schedule = ddim_schedule(20, 0.99)
    assert list(schedule.timesteps) == pipeline_case["trace.timesteps"].tolist() == list(range(900, -1, -50))
    assert schedule.alphas_next[-1] == 1.0


def test_ddim_step_equals_diffusers():
    schedule = ddim_schedule(20, 0.99)
    scheduler = reference_scheduler()
    scheduler.set_timesteps(20)
    generator = torch.Generator().manual_seed(0)
    sample, noise_pred = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    for i, t in enumerate(schedule.timesteps):
        ours = schedule.step(i, sample, noise_pred)
        theirs = scheduler.step(noise_pred, torch.tensor(t), sample, eta=0.0).prev_sample
        assert (ours - theirs).abs().max().item() <= 1e-6, t
    clean = torch.randn(1, 4, 8, 8, generator=generator)
    assert torch.allclose(schedule.add_noise(clean, noise_pred),
                          scheduler.add_noise(clean, noise_pred, torch.tensor([900])), atol=1e-6)


def test_pipeline_reproduces_reference_latents(tiny_graphs, pipeline_case):
    plan = sampling_plan(get_preset("moebius-tiny").unet.time_features, ddim_schedule(20, 0.99), guidance=2.0)
    steps_seen = []
    result = inpaint_tensors(tiny_graphs, plan, pipeline_case["input.image"], pipeline_case["input.mask"],
                             pipeline_case["input.noise"], on_step=lambda done, total: steps_seen.append((done, total)))
    for name, value in result.trace.items():
        assert torch.allclose(value, pipeline_case[f"trace.{name}"], atol=1e-6), name
    reference = pipeline_case["output.latents"]
    relative = ((result.latents - reference).abs().max() / reference.abs().max()).item()
    assert relative <= 1e-4
    assert (result.image01 - pipeline_case["output.image01"]).abs().max().item() <= 1e-4
    assert steps_seen[-1] == (19, 19) and len(steps_seen) == 19


def test_guidance_changes_the_result(tiny_graphs, pipeline_case):
    # guards against a loop that ignores one half of the CFG batch
    schedule = ddim_schedule(20, 0.99)
    dim = get_preset("moebius-tiny").unet.time_features
    args = (pipeline_case["input.image"], pipeline_case["input.mask"], pipeline_case["input.noise"])
    at_1 = inpaint_tensors(tiny_graphs, sampling_plan(dim, schedule, 1.0), *args).latents
    at_2 = inpaint_tensors(tiny_graphs, sampling_plan(dim, schedule, 2.0), *args).latents
    assert (at_1 - at_2).abs().max().item() > 1e-3
