"""The Core ML program interpreter against torch: tiny Moebius graphs converted by coremltools (fp32 and
fp16 programs, as the Core ML backend converts them), compressed weights of every constexpr form, w8a8
activation quantization, errors."""

from __future__ import annotations

import math
import shutil
from copy import deepcopy as copy_module
from pathlib import Path

import coremltools as ct
import coremltools.optimize.coreml as cto
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb
from torch import nn

from edge.backends.coreml.backend import converted_model
from edge.backends.coreml.interpreter import SUPPORTED_OPS, UnsupportedOpError, load_package
from edge.compile.graphs import build_graphs, prepare_graph
from edge.errors import EdgeError
from edge.models import get_preset
from edge.quality.metrics import max_abs, sqnr_db
from edge.targets import load_target

PARITY_GRAPHS = ("unet", "decoder")


def convert(program, inputs, precision, target, path, outputs=None):
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=target, compute_precision=precision,
                       inputs=inputs, outputs=outputs)
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def graphs(tiny_unet, tiny_vae):
    return build_graphs(get_preset("moebius-tiny"), tiny_unet, tiny_vae)


@pytest.fixture(scope="module")
def packages(graphs):
    """{(graph, "fp32" | "fp16"): .mlpackage}: the Core ML backend's own coremltools conversions of the graphs as
    the coreml target prepares them (its conversion cache: the session's coreml bundles convert the same)."""
    rewrites = load_target("coreml").rewrites
    result = {}
    for name in PARITY_GRAPHS:
        prepared = prepare_graph(graphs[name], rewrites, graphs[name].example_inputs())
        for precision in ("fp32", "fp16"):
            model, _ = converted_model(prepared, fp16=precision == "fp16", ios="17")
            result[name, precision] = Path(model.package_path)
    return result


@pytest.fixture(scope="module")
def references(graphs):
    """{graph: (example inputs, torch fp32 output)}."""
    result = {}
    for name in PARITY_GRAPHS:
        inputs = graphs[name].example_inputs()
        with torch.no_grad():
            result[name] = (inputs, graphs[name].module(*inputs))
    return result


@pytest.mark.parametrize("name", PARITY_GRAPHS)
def test_fp32_program_matches_torch(name, packages, references):
    inputs, reference = references[name]
    runner = load_package(packages[name, "fp32"])
    assert sqnr_db(reference, runner(*inputs)) >= 100


@pytest.mark.parametrize("name", PARITY_GRAPHS)
def test_fp16_program_rounds_to_fp16(name, packages, references):
    inputs, reference = references[name]
    runner = load_package(packages[name, "fp16"])
    output = runner(*inputs)
    assert 30 <= sqnr_db(reference, output) < 100  # close, but not fp32: the fp16 rounding is applied
    assert torch.equal(output, output.half().float())  # the output itself is an fp16 value


def test_runner_names_histogram_and_inputs(graphs, packages, references):
    runner = load_package(packages["unet", "fp32"])
    assert runner.input_names == ("latent", "time_features")
    assert runner.output_names == ("noise",)
    histogram = runner.op_histogram()
    convs = sum(isinstance(m, nn.Conv2d) for m in graphs["unet"].module.modules())
    assert histogram["conv"] == convs
    assert histogram["const"] > 0 and set(histogram) <= SUPPORTED_OPS
    inputs, _ = references["unet"]
    by_name = runner.run({"latent": inputs[0].numpy(), "time_features": inputs[1]})
    assert set(by_name) == {"noise"} and by_name["noise"].dtype == torch.float32
    assert torch.equal(by_name["noise"], runner(*inputs))
    seen = {}
    observed = runner.run(dict(zip(runner.input_names, inputs)), observe=lambda name, value: seen.update({name: value}))
    assert torch.equal(seen["noise"], observed["noise"])
    assert len(seen) == sum(n for op, n in histogram.items() if op != "const" and not op.startswith("constexpr"))
    with pytest.raises(EdgeError, match="time_features"):
        runner.run({"latent": inputs[0]})
    with pytest.raises(EdgeError, match=r"latent has shape \(1, 9, 16, 16\)"):
        runner(inputs[0][:1], inputs[1])


class SmallConvNet(nn.Module):
    """Convolutions and a linear layer whose weights the compression tests compress."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.linear = nn.Linear(32, 24)

    def forward(self, x):
        x = self.conv2(torch.relu(self.conv1(x)))  # (1, 32, 4, 4)
        return self.linear(x.permute(0, 2, 3, 1))


def _quantizer(**options):
    return lambda model: cto.linear_quantize_weights(
        model, cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(weight_threshold=0, **options)))


def _palettizer(**options):
    return lambda model: cto.palettize_weights(
        model, cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(weight_threshold=0, **options)))


def _pruner():
    return lambda model: cto.prune_weights(
        model, cto.OptimizationConfig(global_config=cto.OpMagnitudePrunerConfig(target_sparsity=0.5,
                                                                                 weight_threshold=0)))


INT8_PER_CHANNEL = _quantizer(mode="linear_symmetric", dtype="int8", granularity="per_channel")
INT4_PER_BLOCK = _quantizer(mode="linear", dtype="int4", granularity="per_block", block_size=8)  # with offsets
# (name, deployment target, compute precision, compression, the constexpr op it must produce)
COMPRESSIONS = [
    ("int8_per_channel_ios16", "iOS16", "fp32", INT8_PER_CHANNEL, "constexpr_affine_dequantize"),
    ("int8_per_channel_ios18", "iOS18", "fp32", INT8_PER_CHANNEL, "constexpr_blockwise_shift_scale"),
    ("int4_per_block", "iOS18", "fp32", INT4_PER_BLOCK, "constexpr_blockwise_shift_scale"),
    ("int4_per_block_fp16", "iOS18", "fp16", INT4_PER_BLOCK, "constexpr_blockwise_shift_scale"),
    ("palette_4bit_ios16", "iOS16", "fp32", _palettizer(nbits=4), "constexpr_lut_to_dense"),
    ("palette_6bit_grouped", "iOS18", "fp32", _palettizer(nbits=6, granularity="per_grouped_channel", group_size=8),
     "constexpr_lut_to_dense"),
    ("palette_4bit_vectors", "iOS18", "fp32", _palettizer(nbits=4, cluster_dim=2), "constexpr_lut_to_dense"),
    ("sparse_ios16", "iOS16", "fp32", _pruner(), "constexpr_sparse_to_dense"),
    ("sparse_ios18", "iOS18", "fp32", _pruner(), "constexpr_sparse_to_dense"),
]


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    module, example = SmallConvNet().eval(), torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        return module, example, module(example)


def torch_with_package_weights(module: nn.Module, model) -> nn.Module:
    """A copy of `module` holding the weights of a (decompressed) Core ML model: its const `p_<param>...`."""
    weights = cto.get_weights_metadata(model, weight_threshold=0)
    copy = copy_module(module)
    state = {}
    for param in copy.state_dict():
        prefix = "p_" + param.replace(".", "_")
        (value,) = [w.val for key, w in weights.items() if key == prefix or key.startswith(prefix + "_")]
        state[param] = torch.from_numpy(np.asarray(value, np.float32))
    copy.load_state_dict(state)
    return copy


@pytest.mark.parametrize("name,target,precision,compress,constexpr", COMPRESSIONS, ids=[c[0] for c in COMPRESSIONS])
def test_compressed_weights_decode_exactly(name, target, precision, compress, constexpr, small_net, tmp_path):
    """The interpreter decodes compressed weights exactly as coremltools' own decompression does: the
    compressed program equals the same program with coremltools-decompressed dense weights, and torch
    with those weights; the result differs from the uncompressed torch module (compression happened)."""
    module, example, reference = small_net
    program = torch.export.export(module, (example,)).run_decompositions({})
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, target),
                       compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                       inputs=[ct.TensorType(name="x", shape=example.shape)])
    compressed = compress(model)
    compressed.save(str(tmp_path / "compressed.mlpackage"))
    decompressed = cto.decompress_weights(compressed)
    decompressed.save(str(tmp_path / "dense.mlpackage"))
    runner = load_package(tmp_path / "compressed.mlpackage")
    dense = load_package(tmp_path / "dense.mlpackage")
    assert runner.op_histogram()[constexpr] == 3 and constexpr not in dense.op_histogram()

    output = runner(example)
    assert max_abs(dense(example), output) == 0
    with torch.no_grad():
        decompressed_reference = torch_with_package_weights(module, decompressed)(example)
    assert sqnr_db(decompressed_reference, output) >= (40 if precision == "fp16" else 100)  # fp16 activations
    assert sqnr_db(reference, output) < 60


def fake_quantize(x: torch.Tensor, scale, zero_point, low: int, high: int) -> torch.Tensor:
    """The MIL definition: scale * (clip(round_half_even(x / scale) + zero_point) - zero_point)."""
    return (torch.clamp(torch.round(x / scale) + zero_point, low, high) - zero_point) * scale


def test_activation_quantization_w8a8(tmp_path):
    """w8a8 as Core ML runs it: int8 weights (blockwise shift-scale) and quantize / dequantize pairs on the
    activations, per tensor (int8) and per channel (uint8 with zero points). Built with the MIL builder:
    coremltools' linear_quantize_activations calibrates by running Core ML, which Linux cannot.
    Inputs sit on exact rounding ties and beyond the int8 range, so rounding and clamping are both tested."""
    rng = np.random.default_rng(0)
    weight_q = rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8)
    weight_scale = (2.0 ** -rng.integers(7, 10, (16, 1, 1, 1))).astype(np.float32)
    bias = rng.normal(size=16).astype(np.float32)
    in_scale = np.float32(2**-6)
    out_scale = (2.0 ** -rng.integers(2, 5, 16)).astype(np.float32)
    out_zero = rng.integers(100, 156, 16).astype(np.uint8)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 8, 8, 8))], opset_version=ct.target.iOS18)
    def program(x):
        x = mb.quantize(input=x, scale=in_scale, zero_point=np.int8(0), output_dtype="int8")
        x = mb.dequantize(input=x, scale=in_scale, zero_point=np.int8(0))
        weight = mb.constexpr_blockwise_shift_scale(data=weight_q, scale=weight_scale)
        y = mb.conv(x=x, weight=weight, bias=bias, pad_type="same")
        y = mb.quantize(input=y, scale=out_scale, zero_point=out_zero, axis=1, output_dtype="uint8")
        return mb.dequantize(input=y, scale=out_scale, zero_point=out_zero, axis=1)

    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "w8a8.mlpackage"))
    runner = load_package(tmp_path / "w8a8.mlpackage")
    assert runner.op_histogram()["quantize"] == 2 and runner.op_histogram()["dequantize"] == 2

    x = torch.from_numpy(rng.integers(-300, 300, (1, 8, 8, 8)).astype(np.float32)) * 2**-7  # half steps: ties
    weight = torch.from_numpy(weight_q.astype(np.float32) * weight_scale)
    y = torch.conv2d(fake_quantize(x, float(in_scale), 0, -128, 127), weight, torch.from_numpy(bias), padding=1)
    channel = (1, 16, 1, 1)
    reference = fake_quantize(y, torch.from_numpy(out_scale).reshape(channel),
                              torch.from_numpy(out_zero.astype(np.float32)).reshape(channel), 0, 255)
    output = runner(x)
    assert sqnr_db(reference, output) >= 100
    assert max_abs(reference, output) < float(out_scale.min())  # no value landed one quantization step off


@pytest.fixture(scope="module")
def small_package(small_net, tmp_path_factory):
    module, example, _ = small_net
    program = torch.export.export(module, (example,)).run_decompositions({})
    return convert(program, [ct.TensorType(name="x", shape=example.shape)], ct.precision.FLOAT32, ct.target.iOS18,
                   tmp_path_factory.mktemp("small") / "small.mlpackage")


def test_unsupported_op_fails_at_load_naming_it(tmp_path):
    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS17)
    def program(x):
        return mb.cumsum(x=mb.relu(x=x), axis=1, name="running_total")

    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "cumsum.mlpackage"))
    assert "cumsum" not in SUPPORTED_OPS
    with pytest.raises(UnsupportedOpError, match=r"Core ML op 'cumsum' \(output 'running_total'\) is not supported"):
        load_package(tmp_path / "cumsum.mlpackage")
    assert issubclass(UnsupportedOpError, EdgeError)


@pytest.mark.parametrize("damage", ["missing", "spec", "weights", "not_a_package"])
def test_damaged_package_is_an_error_naming_it(damage, small_package, tmp_path):
    path = tmp_path / "damaged.mlpackage"
    if damage != "missing":
        shutil.copytree(small_package, path)
    if damage == "spec":
        (path / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"not a model")
    elif damage == "weights":
        with open(path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin", "r+b") as weights:
            weights.truncate(100)
    elif damage == "not_a_package":
        shutil.rmtree(path)
        path.write_text("hello")
    with pytest.raises(EdgeError, match=str(path)):
        load_package(path)


def test_small_package_matches_torch(small_net, small_package):
    module, example, reference = small_net
    assert sqnr_db(reference, load_package(small_package)(example)) >= 100


class OpZoo(nn.Module):
    """Layers and functions the Moebius graphs do not use, each feeding an output of its own."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
        self.up_odd = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.instance_norm = nn.InstanceNorm2d(6, affine=True)
        self.conv1d = nn.Conv1d(6, 4, 3, padding=2, dilation=2)
        self.max_pool, self.avg_pool = nn.MaxPool2d(2), nn.AvgPool2d(3, stride=2, padding=1)
        with torch.no_grad():
            self.norm.running_mean.uniform_(-1, 1)
            self.norm.running_var.uniform_(0.5, 2)
            self.instance_norm.weight.uniform_(0.5, 2)

    def forward(self, x, index):
        a = self.norm(self.up(x)) + self.up_odd(x)  # (1, 6, 16, 16)
        first, rest = torch.split(self.instance_norm(a), [2, 4], dim=1)
        b = torch.cat([F.gelu(first), rest], 1)
        c = (F.pad(b, (1, 2, 0, 1), mode="reflect")[:, :, :16, 1:17]
             + F.pad(b, (1, 1, 1, 1), mode="replicate")[..., 1:-1, 2:])
        d = torch.einsum("bchw,bdhw->bcd", c, b)  # (1, 6, 6)
        e = torch.index_select(c, 1, index)  # (1, 3, 16, 16)
        f = torch.stack([e.amax(dim=(2, 3)), e.amin(dim=(2, 3)), e.sum(dim=(2, 3))], dim=-1)  # (1, 3, 3)
        g = torch.where(c > 0, torch.sigmoid(c), torch.tanh(c)) * F.leaky_relu(c, 0.1) + F.elu(c) + F.softplus(c)
        h = torch.exp(-g.abs()) + torch.log(g.abs() + 1) + torch.pow(g.abs(), 1.5) + torch.clamp(g, -0.5, 0.5)
        i = self.conv1d(h.flatten(2).mean(-1, keepdim=True).expand(1, 6, 5))  # (1, 4, 5)
        j = F.interpolate(self.max_pool(h), scale_factor=2, mode="nearest") + self.avg_pool(h).repeat(1, 1, 2, 2)
        k = torch.rsqrt(j.abs() + 1).unsqueeze(0).mean(dim=2).squeeze(0)
        return tuple(2 * t for t in (a, b, c, d, e, f, g, h, i, j, k))  # 2 *: distinct output names


def test_ops_beyond_the_moebius_graphs_match_torch(tmp_path):
    torch.manual_seed(0)
    module, x, index = OpZoo().eval(), torch.randn(1, 8, 8, 8), torch.tensor([4, 0, 2])
    with torch.no_grad():
        references = module(x, index)
    program = torch.export.export(module, (x, index)).run_decompositions({})
    convert(program, None, ct.precision.FLOAT32, ct.target.iOS18, tmp_path / "zoo.mlpackage")
    runner = load_package(tmp_path / "zoo.mlpackage")
    assert set(runner.op_histogram()) >= {"conv_transpose", "crop", "instance_norm", "split", "gelu", "pad", "matmul",
                                          "gather", "stack", "reduce_max", "select", "softplus", "max_pool",
                                          "avg_pool", "tile", "expand_dims"}
    outputs = runner.run({"x": x, "index": index.int()})
    for name, reference in zip(runner.output_names, references):
        assert sqnr_db(reference, outputs[name]) >= 100, name



def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def test_mil_ops_match_numpy(tmp_path):
    """Ops the torch programs above do not produce, written with the MIL builder, against numpy."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (2, 3, 4)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 3).astype(np.float32), rng.normal(size=3).astype(np.float32)
    mean, variance = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    positive = np.abs(x) + 0.5
    channel = (1, 3, 1)
    normalized = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    expected = {
        "erf": np.vectorize(math.erf)(x), "sign": np.sign(x), "exp2": np.exp2(x), "inverse": 1 / (positive + 1e-4),
        "floor_div": np.floor_divide(x, 0.75), "mod": np.mod(x, 0.75), "relu6": np.clip(4 * x, 0, 6),
        "round": np.round(3 * x), "ceil": np.ceil(x), "sin": np.sin(x), "tan": np.tan(x / 2),
        "truncated": np.trunc(3 * x), "between": ((x > 0) & (x < 1)).astype(np.float32),
        "select": np.where(x > 0, x, -2 * x), "prod": np.prod(positive, axis=1),
        "l2": np.sqrt((x**2).sum(2, keepdims=True)), "sum_square": (x**2).sum((0, 2)),
        "batch_norm": (x - mean.reshape(channel)) / np.sqrt(variance.reshape(channel) + 1e-5) * gamma.reshape(channel)
        + beta.reshape(channel),
        "layer_norm": normalized * gamma.reshape(channel) + beta.reshape(channel),
        "reversed": x[0:2, 2:0:-1, 3::-2], "interleaved": np.stack([x, 2 * x], axis=3).reshape(2, 3, 8),
        "gathered": x[:, [2, 0], :], "batch_gathered": np.stack([x[0, [1, 0]], x[1, [2, 2]]]),
        "sized": x[:, 1:3, 0:2], "gelu_tanh": _gelu_tanh(x),
        "gelu_sigmoid": x / (1 + np.exp(-1.702 * x)),
    }

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS17)
    def program(x):
        positive = mb.add(x=mb.abs(x=x), y=0.5)
        greater = mb.greater(x=x, y=0.0)
        return (
            mb.erf(x=x, name="erf"), mb.sign(x=x, name="sign"), mb.exp2(x=x, name="exp2"),
            mb.inverse(x=positive, name="inverse"), mb.floor_div(x=x, y=0.75, name="floor_div"),
            mb.mod(x=x, y=0.75, name="mod"), mb.relu6(x=mb.mul(x=x, y=4.0), name="relu6"),
            mb.round(x=mb.mul(x=x, y=3.0), name="round"), mb.ceil(x=x, name="ceil"), mb.sin(x=x, name="sin"),
            mb.tan(x=mb.mul(x=x, y=0.5), name="tan"),
            mb.cast(x=mb.cast(x=mb.mul(x=x, y=3.0), dtype="int32"), dtype="fp32", name="truncated"),
            mb.cast(x=mb.logical_and(x=greater, y=mb.less(x=x, y=1.0)), dtype="fp32", name="between"),
            mb.select(cond=greater, a=x, b=mb.mul(x=x, y=-2.0), name="select"),
            mb.reduce_prod(x=positive, axes=[1], name="prod"),
            mb.reduce_l2_norm(x=x, axes=[2], keep_dims=True, name="l2"),
            mb.reduce_sum_square(x=x, axes=[0, 2], name="sum_square"),
            mb.batch_norm(x=x, mean=mean, variance=variance, gamma=gamma, beta=beta, name="batch_norm"),
            mb.layer_norm(x=x, axes=[1], gamma=gamma, beta=beta, epsilon=1e-5, name="layer_norm"),
            mb.slice_by_index(x=x, begin=[0, 2, 3], end=[2, 0, 0], stride=[1, -1, -2],
                              end_mask=[False, False, True], name="reversed"),
            mb.concat(values=(x, mb.mul(x=x, y=2.0)), axis=2, interleave=True, name="interleaved"),
            mb.gather(x=x, indices=np.array([-1, 0], np.int32), axis=1, name="gathered"),
            mb.gather(x=x, indices=np.array([[1, 0], [2, 2]], np.int32), axis=1, batch_dims=1, name="batch_gathered"),
            mb.slice_by_size(x=x, begin=[0, 1, 0], size=[-1, 2, 2], name="sized"),
            mb.gelu(x=x, mode="TANH_APPROXIMATION", name="gelu_tanh"),
            mb.gelu(x=x, mode="SIGMOID_APPROXIMATION", name="gelu_sigmoid"),
        )

    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(tmp_path / "ops.mlpackage"))
    runner = load_package(tmp_path / "ops.mlpackage")
    assert set(runner.op_histogram()) >= {
        "erf", "sign", "exp2", "inverse", "floor_div", "mod", "relu6", "round", "ceil", "sin", "tan", "cast",
        "logical_and", "less", "select", "reduce_prod", "reduce_l2_norm", "reduce_sum_square", "batch_norm",
        "layer_norm", "slice_by_index", "concat", "gather", "slice_by_size", "gelu"}  # none folded away
    outputs = runner.run({runner.input_names[0]: x})
    assert set(outputs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(outputs[name].numpy(), value, rtol=1e-5, atol=1e-5, err_msg=name)
