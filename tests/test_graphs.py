"""The exported graphs: clean for every target (no Conv3d, no gathers, no int64 inputs), and small."""

from __future__ import annotations

import collections

import pytest
import torch

from edge.compile.graphs import UNetGraph, build_graphs, fold_batch_norms
from edge.compile.rewrites import REWRITES
from edge.models import cfg_input_ids, get_preset, timestep_features

# Recorded on moebius-tiny (the same graph as moebius-0.22b, only narrower), torch 2.13.0:
# 1272 call_function nodes from torch.export, 1670 after run_decompositions (core ATen, what
# to_edge sees); 60 of them are the Local-λ's transposed lambdas (four small transposes and views
# per block, edge.models.unet.LocalLambda). The published implementation exports to ~3,000.
MAX_EXPORT_NODES = 1290
MAX_CORE_ATEN_NODES = 1690
FORBIDDEN = ("conv3d", "index", "gather", "embedding", "_to_copy")


@pytest.fixture(scope="module")
def graphs(tiny_unet, tiny_vae):
    return build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae)


@pytest.fixture(scope="module")
def unet_program(graphs):
    return graphs["unet"].export()


def call_targets(program) -> collections.Counter:
    return collections.Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")


def test_unet_graph_is_small(unet_program):
    assert sum(call_targets(unet_program).values()) <= MAX_EXPORT_NODES
    core = unet_program.run_decompositions()
    assert sum(call_targets(core).values()) <= MAX_CORE_ATEN_NODES


def test_unet_graph_has_no_conv3d_gather_or_rank5(unet_program):
    core = unet_program.run_decompositions()
    targets = call_targets(core)
    assert not [t for t in targets if any(word in t for word in FORBIDDEN)]
    assert "aten.convolution.default" in targets
    for node in core.graph.nodes:
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor):
            assert value.dim() <= 4, f"{node.name} is rank {value.dim()}"


@pytest.mark.parametrize("name", ["encoder", "unet", "decoder"])
def test_graph_inputs_are_float_at_static_shapes(graphs, name):
    spec = graphs[name]
    program = spec.export()
    user_inputs = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    placeholders = {n.name: n.meta["val"] for n in program.graph.nodes if n.op == "placeholder"}
    assert len(user_inputs) == len(spec.inputs)
    for name_, tensor_spec in zip(user_inputs, spec.inputs, strict=True):
        assert placeholders[name_].dtype == torch.float32
        assert tuple(placeholders[name_].shape) == tensor_spec.shape


def test_exported_unet_matches_the_published_calling_convention(unet_program, tiny_unet, parity_case):
    latent = parity_case["input.latent"]
    reference = tiny_unet(latent, torch.tensor([500]), cfg_input_ids(1))
    features = timestep_features(torch.tensor([500]), tiny_unet.config.time_features)
    exported = unet_program.module()(latent, features)
    assert (exported - reference).abs().max().item() <= 1e-5


def test_batch_norm_folding_changes_nothing_but_rounding(tiny_unet, parity_case):
    folded = UNetGraph(tiny_unet)
    folded.denoiser = fold_batch_norms(folded.denoiser)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    features = timestep_features(torch.tensor([900]), tiny_unet.config.time_features)
    plain = UNetGraph(tiny_unet)(parity_case["input.latent"], features)
    assert (folded(parity_case["input.latent"], features) - plain).abs().max().item() <= 1e-5


def test_subpixel_upsampling_is_the_same_sums(graphs):
    # the decoder's nearest 2x upsampling + 3x3 conv as one dense 4x4 transposed conv: rounding apart the same
    spec = graphs["decoder"]
    inputs = spec.example_inputs(seed=1)
    rewritten = REWRITES["decoder-upsample-as-subpixel-deconv"](spec.module)
    targets = call_targets(torch.export.export(rewritten, inputs, strict=False))
    assert not any("upsample" in t for t in targets) and targets["aten.conv_transpose2d.input"] == 3
    with torch.no_grad():
        reference, output = spec.module(*inputs), rewritten(*inputs)
    assert (output - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()
    unet = REWRITES["decoder-upsample-as-subpixel-deconv"](graphs["unet"].module)
    assert sum(type(m).__name__ == "Upsample" for m in unet.modules()) == 2  # the UNet's are left alone


@pytest.mark.parametrize("name", ["unet", "decoder"])
def test_pointwise_convs_as_linears_are_the_same_sums(graphs, name):
    # the int4 mode's rewrite: every 1x1 conv becomes a linear over (B, H*W, C) tokens, none is left, same output
    spec = graphs[name]
    inputs = spec.example_inputs(seed=1)
    pointwise = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in spec.module.modules())
    rewritten = REWRITES["pointwise-conv-as-linear"](spec.module)
    assert pointwise > 0 and not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)
                                     for m in rewritten.modules())
    assert sum(type(m).__name__ == "PointwiseConvAsLinear" for m in rewritten.modules()) == pointwise
    with torch.no_grad():
        reference, output = spec.module(*inputs), rewritten(*inputs)
    assert (output - reference).abs().max().item() <= 1e-5 * reference.abs().max().item()
