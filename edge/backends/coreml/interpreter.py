"""A Core ML program interpreter: runs the MIL program of an `.mlpackage` with torch on any machine.

Core ML itself only runs on Apple hardware; this module lets `edge check` and `edge inpaint --bundle`
run Core ML bundles on Linux. It uses no Apple code: coremltools (pure Python + protobuf) reads the
package's spec and its weight blobs, and every op is our own torch function.

Loading (`load_package`) turns the `main` function into a list of steps once:
- `const` values and compressed weights (`constexpr_*` ops: affine dequantize, blockwise shift-scale,
  palettes (look-up tables, sub-byte indices, per-grouped-channel), sparse masks, casts) are decoded
  at load time into float32 torch tensors;
- every other op becomes (kernel function, constant keyword arguments, names of its dynamic inputs).
An op type without a kernel raises UnsupportedOpError at load time, naming the op.

Precision: tensors are held as float32. Where the program declares an op's output fp16, the kernel
computes in fp32 and the result is rounded to fp16 (fp16 storage of every intermediate, as Core ML
stores them). This is an approximation of a device: the Neural Engine and GPU also accumulate inside
an op (a convolution's sums, a softmax) in reduced precision, which this interpreter does not model.
fp32 programs are computed in fp32 (parity with torch fp32 is > 100 dB SQNR).
Activation `quantize` / `dequantize` (iOS17, w8a8) follow the MIL definition exactly:
q = clip(round_half_even(x / scale) + zero_point), x' = scale * (q - zero_point).

Covered op types: SUPPORTED_OPS, i.e. every op coremltools 9 emits for the Moebius graphs (fp32 and
fp16, iOS17 and iOS18), common CNN / transformer ops, the constexpr weight decompressions of iOS16
and iOS18, and iOS17 quantize / dequantize. Not covered: control flow (cond, while_loop), state ops,
dynamic-shape ops (shape, fill, range_1d), bilinear / crop-resize, topk, cumsum, the combined
sparse + palette / shift-scale constexprs (constexpr_lut_to_sparse, constexpr_sparse_blockwise_shift_scale).
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge.errors import EdgeError


class UnsupportedOpError(EdgeError):
    """The program holds an op type this interpreter has no kernel for."""


# --------------------------------------------------------------------------------------------- kernels
# Each kernel takes the MIL op's inputs as keyword arguments (MIL parameter names, MIL defaults) and
# returns a tensor or a tuple of tensors (ops with several outputs). Integer attributes arrive as
# Python ints/lists when constant, as torch tensors when computed; `_ints` reads either.


def _ints(value) -> list[int]:
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.flatten().tolist()]
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    return [int(v) for v in value]


def _axes(axes, rank: int) -> list[int]:
    return [a % rank for a in _ints(axes)]


def _tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def _binary(fn):
    """Elementwise with numpy broadcasting; x may be a constant scalar (1 - y), torch wants a tensor first."""
    return lambda x, y: fn(x if isinstance(x, torch.Tensor) else torch.as_tensor(x), y)


def _unary(fn):
    return lambda x: fn(x)


def _with_epsilon(fn, default: float):
    return lambda x, epsilon=default: fn(x, epsilon)


def _reduce(fn):
    def reduce(x, axes=None, keep_dims=False):
        dims = list(range(x.dim())) if axes is None else _axes(axes, x.dim())
        return fn(x, dims, keep_dims)
    return reduce


def _reduce_max(x, dims, keep):
    return torch.amax(x, dim=dims, keepdim=keep)


def _reduce_min(x, dims, keep):
    return torch.amin(x, dim=dims, keepdim=keep)


def _reduce_prod(x, dims, keep):
    for dim in sorted(dims, reverse=True):
        x = torch.prod(x, dim=dim, keepdim=keep)
    return x


def _spatial_pads(pad_type: str, pad, spatial: list[int], kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial dim for MIL pad_type valid/same/same_lower/custom."""
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    if pad_type == "custom":
        pad = _ints(pad)
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(spatial))]
    pads = []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        pads.append((large, small) if pad_type == "same_lower" else (small, large))
    return pads


def _torch_pad(pads: list[tuple[int, int]]) -> list[int]:
    """Per-dim (begin, end) from the first padded dim -> F.pad's order (last dim first)."""
    return [p for begin_end in reversed(pads) for p in begin_end]


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    spatial = x.dim() - 2
    strides = _ints(strides) if strides is not None else [1] * spatial
    dilations = _ints(dilations) if dilations is not None else [1] * spatial
    pads = _spatial_pads(pad_type, pad, list(x.shape[2:]), list(weight.shape[2:]), strides, dilations)
    if all(begin == end for begin, end in pads):  # symmetric: torch pads inside the convolution
        return _CONV[spatial](x, weight, bias, strides, [begin for begin, _ in pads], dilations, int(groups))
    return _CONV[spatial](F.pad(x, _torch_pad(pads)), weight, bias, strides, 0, dilations, int(groups))


def _conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                    dilations=None, groups=1):
    """weight (C_in, C_out / groups, *kernel). Full transposed conv, then the MIL padding is cropped."""
    spatial = x.dim() - 2
    strides = _ints(strides) if strides is not None else [1] * spatial
    dilations = _ints(dilations) if dilations is not None else [1] * spatial
    y = _CONV_TRANSPOSE[spatial](x, weight, bias, strides, 0, 0, int(groups), dilations)
    full = list(y.shape[2:])
    if pad_type == "custom":
        pads = [tuple(p) for p in np.reshape(_ints(pad), (spatial, 2)).tolist()]
    elif pad_type == "valid":
        pads = [(0, 0)] * spatial
    else:  # same: output = input * stride
        pads = []
        for size, stride, in_size in zip(full, strides, x.shape[2:]):
            total = size - in_size * stride
            small, large = total // 2, total - total // 2
            pads.append((large, small) if pad_type == "same_lower" else (small, large))
    if output_shape is not None:
        wanted = _ints(output_shape)[-spatial:]
        pads = [(begin, size - begin - want) for (begin, _), size, want in zip(pads, full, wanted)]
    index = (slice(None), slice(None)) + tuple(slice(b, size - e) for (b, e), size in zip(pads, full))
    return y[index]


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _max_pool(x, kernel_sizes, pad_type="valid", strides=None, pad=None, ceil_mode=False):
    spatial, kernel = x.dim() - 2, _ints(kernel_sizes)
    strides = _ints(strides) if strides is not None else [1] * spatial
    pads = _spatial_pads(pad_type, pad, list(x.shape[2:]), kernel, strides, [1] * spatial)
    padded = F.pad(x, _torch_pad(pads), value=-math.inf)
    return _MAX_POOL[spatial](padded, kernel, strides, 0, 1, bool(ceil_mode))


def _avg_pool(x, kernel_sizes, pad_type="valid", strides=None, pad=None, exclude_padding_from_average=False,
              ceil_mode=False):
    spatial, kernel = x.dim() - 2, _ints(kernel_sizes)
    strides = _ints(strides) if strides is not None else [1] * spatial
    pads = _spatial_pads(pad_type, pad, list(x.shape[2:]), kernel, strides, [1] * spatial)
    pool = _AVG_POOL[spatial]
    mean = pool(F.pad(x, _torch_pad(pads)), kernel, strides, 0, bool(ceil_mode))
    if not exclude_padding_from_average:
        return mean
    inside = F.pad(torch.ones_like(x[:1, :1]), _torch_pad(pads))  # 1 on real elements, 0 on padding
    return mean / pool(inside, kernel, strides, 0, bool(ceil_mode))


def _crop(x, crop_height, crop_width):
    (top, bottom), (left, right) = _ints(crop_height), _ints(crop_width)
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


def _linear(x, weight, bias=None):
    return F.linear(x, weight, bias)


def _matmul(x, y, transpose_x=False, transpose_y=False):
    if transpose_x:
        x = x.transpose(-1, -2)
    if transpose_y:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


def _einsum(values, equation):
    return torch.einsum(equation, *values)


def _reshape(x, shape):
    """MIL reshape: -1 is inferred; a 0 copies the input dim at the same place counted from the right,
    or is 1 where the input has no such dim (iOS17)."""
    shape = _ints(shape)
    offset = len(shape) - x.dim()  # shape[i] faces x.shape[i - offset]
    return x.reshape([d if d != 0 else x.shape[i - offset] if 0 <= i - offset < x.dim() else 1
                      for i, d in enumerate(shape)])


def _reshape_to(x, shape: tuple[int, ...]):
    """reshape / expand_dims / squeeze whose output shape the program states statically."""
    return x.reshape(shape)


def _expand_dims(x, axes):
    rank = x.dim() + len(_ints(axes))
    for axis in sorted(a % rank for a in _ints(axes)):
        x = x.unsqueeze(axis)
    return x


def _squeeze(x, axes=None):
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(_axes(axes, x.dim())))


def _transpose(x, perm):
    return x.permute(_ints(perm))


def _concat(values, axis, interleave=False):
    if interleave:  # (n, ..., d, ...) pieces -> (..., d * n, ...) taking one slice of each in turn
        stacked = torch.stack(values, dim=int(axis) % values[0].dim() + 1)
        return stacked.flatten(int(axis) % values[0].dim(), int(axis) % values[0].dim() + 1)
    return torch.cat(values, dim=int(axis))


def _stack(values, axis):
    return torch.stack(values, dim=int(axis))


def _split(x, axis, num_splits=None, split_sizes=None):
    sizes = _ints(split_sizes) if split_sizes is not None else x.shape[int(axis)] // int(num_splits)
    return tuple(torch.split(x, sizes, dim=int(axis)))


def _slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = x.dim()
    begin, end = _ints(begin), _ints(end)
    stride = _ints(stride) if stride is not None else [1] * rank
    begin_mask = list(begin_mask) if begin_mask is not None else [False] * rank
    end_mask = list(end_mask) if end_mask is not None else [False] * rank
    squeeze_mask = list(squeeze_mask) if squeeze_mask is not None else [False] * rank
    for dim in range(rank):
        if squeeze_mask[dim]:
            x = x.narrow(dim, begin[dim] % x.shape[dim], 1)
            continue
        indices = range(*slice(None if begin_mask[dim] else begin[dim], None if end_mask[dim] else end[dim],
                               stride[dim]).indices(x.shape[dim]))
        if indices.step > 0:
            x = x.narrow(dim, indices.start, len(indices))[(slice(None),) * dim + (slice(None, None, indices.step),)]
        else:
            x = x.index_select(dim, torch.tensor(list(indices), dtype=torch.long))
    squeezed = [d for d in range(rank) if squeeze_mask[d]]
    return x.squeeze(tuple(squeezed)) if squeezed else x


def _slice_by_size(x, begin, size):
    for dim, (start, length) in enumerate(zip(_ints(begin), _ints(size))):
        x = x.narrow(dim, start, x.shape[dim] - start if length == -1 else length)
    return x


def _gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    """x (*x_before, N, *x_after), indices (*I) -> (*x_before, *I, *x_after); negative indices count from N.
    With batch_dims b, x and indices share their first b dims and each batch item gathers on its own."""
    axis, batch = int(axis) % x.dim(), int(batch_dims)
    indices = _tensor(indices).long()
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    if batch == 0:
        picked = x.index_select(axis, indices.flatten())
        return picked.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])
    items = [_gather(item, item_indices, axis - batch)
             for item, item_indices in zip(x.flatten(0, batch - 1), indices.flatten(0, batch - 1))]
    return torch.stack(items).reshape(x.shape[:batch] + items[0].shape)


def _tile(x, reps):
    return x.repeat(_ints(reps))


def _pad(x, pad, mode="constant", constant_val=0.0):
    pad = _ints(pad)
    pads = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    if mode == "constant":
        return F.pad(x, _torch_pad(pads), value=float(constant_val))
    while pads and pads[0] == (0, 0):  # torch pads only the trailing dims in reflect / replicate modes
        pads = pads[1:]
    return F.pad(x, _torch_pad(pads), mode={"reflect": "reflect", "replicate": "replicate"}[mode])


def _upsample_nearest_neighbor(x, scale_factor_height=1.0, scale_factor_width=1.0):
    # torch "nearest" with a given scale reads source index floor(dst / scale), as Core ML does.
    return F.interpolate(x, scale_factor=(float(scale_factor_height), float(scale_factor_width)), mode="nearest")


def _layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    dims = list(range(x.dim())) if axes is None else sorted(_axes(axes, x.dim()))
    if dims == list(range(x.dim() - len(dims), x.dim())):
        return F.layer_norm(x, x.shape[-len(dims):], gamma, beta, float(epsilon))
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).square().mean(dim=dims, keepdim=True)
    y = (x - mean) / torch.sqrt(var + float(epsilon))
    # gamma / beta have the shape of the normalized dims: broadcast them in place
    shape = [x.shape[d] if d in dims else 1 for d in range(x.dim())]
    if gamma is not None:
        y = y * gamma.reshape(shape)
    return y + beta.reshape(shape) if beta is not None else y


def _batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    return F.batch_norm(x, mean, variance, gamma, beta, False, 0.0, float(epsilon))


def _instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    return F.instance_norm(x, weight=gamma, bias=beta, eps=float(epsilon))


def _softmax(x, axis=-1):
    return torch.softmax(x, dim=int(axis))


def _scaled_dot_product_attention(query, key, value, attn_mask=None):
    return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)


def _gelu(x, mode="EXACT"):
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    return F.gelu(x, approximate="tanh" if mode == "TANH_APPROXIMATION" else "none")


def _clip(x, alpha, beta):
    return torch.clamp(x, min=float(alpha), max=float(beta))


def _leaky_relu(x, alpha=0.01):
    return F.leaky_relu(x, float(alpha))


def _elu(x, alpha=1.0):
    return F.elu(x, float(alpha))


def _softplus(x):
    return F.softplus(x)


def _select(cond, a, b):
    return torch.where(_tensor(cond).bool(), _tensor(a), _tensor(b))


_CAST_DTYPES = {"fp16": torch.float32, "fp32": torch.float32, "int64": torch.int64, "int32": torch.int32,
                "int16": torch.int16,
                "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


def _cast(x, dtype):
    # fp16 is held as float32; the step rounds it since the op's output type is fp16.
    # float -> int truncates toward zero (numpy astype, the coremltools reference).
    return _tensor(x).to(_CAST_DTYPES[dtype])


def _identity(x):
    return x


_QUANTIZED_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535)}


def _per_axis(param, x: torch.Tensor, axis) -> torch.Tensor:
    """A scalar or vector scale / zero point broadcast along `axis` of x."""
    param = _tensor(param).float()
    if param.dim() == 0 or param.dim() == x.dim():
        return param
    shape = [1] * x.dim()
    shape[int(axis) % x.dim()] = param.numel()
    return param.reshape(shape)


def _quantize(input, scale, output_dtype, zero_point=None, axis=None):
    low, high = _QUANTIZED_RANGE[output_dtype]
    q = torch.round(input / _per_axis(scale, input, axis))  # round half to even, like np.around
    if zero_point is not None:
        q = q + _per_axis(zero_point, input, axis)
    return torch.clamp(q, low, high).to(torch.int32)


def _dequantize(input, scale, zero_point=None, axis=None):
    x = _tensor(input).float()
    if zero_point is not None:
        x = x - _per_axis(zero_point, x, axis)
    return x * _per_axis(scale, x, axis)


def _logical(fn):
    return lambda x, y: fn(_tensor(x).bool(), _tensor(y).bool())


_KERNELS: dict[str, Callable] = {
    # linear algebra
    "conv": _conv, "conv_transpose": _conv_transpose, "linear": _linear, "matmul": _matmul, "einsum": _einsum,
    "max_pool": _max_pool, "avg_pool": _avg_pool,
    # elementwise binary (numpy broadcasting)
    "add": _binary(torch.add), "sub": _binary(torch.sub), "mul": _binary(torch.mul),
    "real_div": _binary(torch.div), "floor_div": _binary(lambda x, y: torch.div(x, y, rounding_mode="floor")),
    "mod": _binary(torch.remainder), "pow": _binary(torch.pow),
    "maximum": _binary(torch.maximum), "minimum": _binary(torch.minimum),
    "equal": _binary(torch.eq), "not_equal": _binary(torch.ne), "less": _binary(torch.lt),
    "less_equal": _binary(torch.le), "greater": _binary(torch.gt), "greater_equal": _binary(torch.ge),
    "logical_and": _logical(torch.logical_and), "logical_or": _logical(torch.logical_or),
    "logical_xor": _logical(torch.logical_xor), "logical_not": _unary(lambda x: torch.logical_not(x.bool())),
    "select": _select,
    # elementwise unary
    "abs": _unary(torch.abs), "ceil": _unary(torch.ceil), "floor": _unary(torch.floor),
    "round": _unary(torch.round), "sign": _unary(torch.sign), "square": _unary(torch.square),
    "sqrt": _unary(torch.sqrt), "exp": _unary(torch.exp), "exp2": _unary(torch.exp2), "erf": _unary(torch.erf),
    "sin": _unary(torch.sin), "cos": _unary(torch.cos), "tan": _unary(torch.tan), "tanh": _unary(torch.tanh),
    "rsqrt": _with_epsilon(lambda x, eps: torch.rsqrt(x + float(eps)), 1e-12),
    "log": _with_epsilon(lambda x, eps: torch.log(x + float(eps)), 1e-45),
    "inverse": _with_epsilon(lambda x, eps: 1.0 / (x + float(eps)), 1e-4),
    "relu": _unary(torch.relu), "relu6": _unary(F.relu6), "sigmoid": _unary(torch.sigmoid),
    "silu": _unary(F.silu), "gelu": _gelu, "softplus": _softplus, "leaky_relu": _leaky_relu, "elu": _elu,
    "clip": _clip, "cast": _cast, "identity": _identity,
    # reductions and normalization
    "reduce_mean": _reduce(lambda x, d, k: torch.mean(x, dim=d, keepdim=k)),
    "reduce_sum": _reduce(lambda x, d, k: torch.sum(x, dim=d, keepdim=k)),
    "reduce_max": _reduce(_reduce_max), "reduce_min": _reduce(_reduce_min), "reduce_prod": _reduce(_reduce_prod),
    "reduce_sum_square": _reduce(lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k)),
    "reduce_l2_norm": _reduce(lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k))),
    "softmax": _softmax, "layer_norm": _layer_norm, "batch_norm": _batch_norm, "instance_norm": _instance_norm,
    "scaled_dot_product_attention": _scaled_dot_product_attention,
    # shape and layout
    "reshape": _reshape, "expand_dims": _expand_dims, "squeeze": _squeeze, "transpose": _transpose,
    "concat": _concat, "stack": _stack, "split": _split, "slice_by_index": _slice_by_index,
    "slice_by_size": _slice_by_size, "crop": _crop, "gather": _gather, "tile": _tile, "pad": _pad,
    "upsample_nearest_neighbor": _upsample_nearest_neighbor,
    # activation quantization (iOS17)
    "quantize": _quantize, "dequantize": _dequantize,
}
_STATIC_SHAPE_OPS = frozenset({"reshape", "expand_dims", "squeeze"})  # run as x.reshape(stated output shape)
# Ops whose outputs are some of their inputs' values (same dtype in and out): in an fp16 program these
# are fp16 values already, so the step skips the (costly) rounding.
_VALUE_PRESERVING_OPS = frozenset({
    "reshape", "expand_dims", "squeeze", "transpose", "concat", "stack", "split", "slice_by_index",
    "slice_by_size", "crop", "gather", "tile", "pad", "identity", "upsample_nearest_neighbor", "max_pool",
    "relu", "reduce_max", "reduce_min", "select", "maximum", "minimum"})
_LIST_PARAMS = frozenset({"values"})  # variadic inputs (concat, stack, einsum)


# ---------------------------------------------------------------------------- compressed weights
# constexpr ops run once at load time on numpy values (fp16 values stay exact in float32).


def _constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    """iOS16: scale * (data - zero_point); scale / zero_point scalar or along `axis`."""
    data = quantized_data.astype(np.float32)
    shape = [1] * data.ndim
    if np.ndim(scale) == 1:
        shape[int(axis) % data.ndim] = -1
    zero = np.reshape(np.asarray(zero_point, np.float32), shape if np.ndim(zero_point) == 1 else ())
    return np.reshape(np.asarray(scale, np.float32), shape if np.ndim(scale) == 1 else ()) * (data - zero)


def _repeat_blocks(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-block parameter (same rank as the data, each dim dividing it) repeated to the data's shape."""
    for axis, (size, blocks) in enumerate(zip(shape, param.shape)):
        param = np.repeat(param, size // blocks, axis=axis)
    return param


def _constexpr_blockwise_shift_scale(data, scale, offset=None):
    """iOS18: scale * (data - offset), scale and offset given per block of the data."""
    data = data.astype(np.float32)
    if offset is not None:
        data = data - _repeat_blocks(np.asarray(offset, np.float32), data.shape)
    return _repeat_blocks(np.asarray(scale, np.float32), data.shape) * data


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """uint8 bytes holding n-bit unsigned values packed from the least significant bit up -> (count,)."""
    bits = np.unpackbits(packed.astype(np.uint8), bitorder="little")[: count * nbits]
    return (bits.reshape(count, nbits).astype(np.int64) << np.arange(nbits)).sum(axis=1)


def _constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    """Palettized weights.
    iOS16: lut (2^n,), indices packed n-bit uint8 bytes, output `shape`.
    iOS18: indices (*shape) of uint-n, lut (*blocks, 2^n, vector_size): each block of the output
    (shape[i] / blocks[i] along dim i) has its own palette; vector_size > 1 stores vectors along
    `vector_axis` (the output is then vector_size times longer there)."""
    if shape is not None:
        shape = tuple(int(s) for s in np.asarray(shape).flatten())
        nbits = int(np.log2(lut.size))
        return lut[_unpack_bits(indices, nbits, int(np.prod(shape)))].reshape(shape).astype(np.float32)
    indices = indices.astype(np.int64)
    vector_size = lut.shape[-1]
    if vector_size > 1:  # move the vector axis last: each index there expands to vector_size values
        axis = int(vector_axis) % indices.ndim
        indices = np.swapaxes(indices, axis, -1)
        lut = np.swapaxes(lut, axis, -3)
    blocks = lut.shape[:-2]
    block_along = [np.arange(size) // (size // count) for size, count in zip(indices.shape, blocks)]
    palette = np.ravel_multi_index(np.ix_(*block_along), blocks)  # (*indices.shape) broadcast: each one's palette
    values = lut.reshape(-1, *lut.shape[-2:])[palette, indices]  # (*indices.shape, vector_size)
    values = values.reshape(indices.shape[:-1] + (indices.shape[-1] * vector_size,))
    if vector_size > 1:
        values = np.swapaxes(values, axis, -1)
    return values.astype(np.float32)


def _constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    """iOS16: mask packed 1-bit uint8 bytes + `shape`; iOS18: mask uint1 (*shape)."""
    if shape is not None:
        shape = tuple(int(s) for s in np.asarray(shape).flatten())
        mask = _unpack_bits(mask, 1, int(np.prod(shape))).reshape(shape)
    dense = np.zeros(mask.shape, np.float32)
    dense[mask != 0] = nonzero_data
    return dense


def _constexpr_cast(source_val, output_dtype):
    return np.asarray(source_val).astype(np.float32)


_CONSTEXPRS: dict[str, Callable] = {
    "constexpr_affine_dequantize": _constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": _constexpr_blockwise_shift_scale,
    "constexpr_lut_to_dense": _constexpr_lut_to_dense,
    "constexpr_sparse_to_dense": _constexpr_sparse_to_dense,
    "constexpr_cast": _constexpr_cast,
}

SUPPORTED_OPS: frozenset[str] = frozenset(_KERNELS) | frozenset(_CONSTEXPRS) | {"const"}


# ------------------------------------------------------------------------------------------ program


@dataclass(frozen=True)
class _Step:
    """One op, resolved at load time: kernel(**constants, **{param: env[name]}, **{param: [env values]})."""

    kernel: Callable
    constants: dict
    inputs: tuple[tuple[str, str], ...]  # (param, value name)
    list_inputs: tuple[tuple[str, tuple], ...]  # (param, (value name or _Literal, ...))
    outputs: tuple[str, ...]
    fp16_outputs: tuple[bool, ...]  # round these outputs to fp16
    release: tuple[str, ...] = ()  # values no later step reads: dropped after this one (peak memory)


@dataclass(frozen=True)
class _Literal:
    value: object


class MilProgramRunner:
    """Executes the `main` function of a Core ML ML program. Built by `load_package`."""

    def __init__(self, source: str, input_names: tuple[str, ...], input_shapes: tuple[tuple[int, ...] | None, ...],
                 input_fp16: tuple[bool, ...],
                 output_names: tuple[str, ...], steps: tuple[_Step, ...], constants: dict[str, object],
                 histogram: dict[str, int]):
        self.source = source
        self.input_names = input_names
        self.output_names = output_names
        self._input_shapes = input_shapes  # None where the program leaves a dim flexible
        self._input_fp16 = input_fp16
        self._steps = steps
        self._constants = constants  # outputs the program states as constants
        self._histogram = histogram

    def op_histogram(self) -> dict[str, int]:
        """op type -> count in `main`, const and constexpr ops included."""
        return dict(self._histogram)

    def __call__(self, *tensors) -> torch.Tensor:
        """Positional inputs in input order -> the first output."""
        if len(tensors) != len(self.input_names):
            raise EdgeError(f"{self.source}: expects {len(self.input_names)} inputs "
                            f"({', '.join(self.input_names)}), got {len(tensors)}")
        return self.run(dict(zip(self.input_names, tensors)))[self.output_names[0]]

    @torch.no_grad()
    def run(self, inputs: Mapping[str, object],
            observe: Callable[[str, torch.Tensor], None] | None = None) -> dict[str, torch.Tensor]:
        """{input name: numpy array or torch tensor} -> {output name: float32 tensor}.
        observe(name, value) sees every op output as it is computed (calibration statistics)."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise EdgeError(f"{self.source}: missing input {', '.join(missing)} "
                            f"(inputs are {', '.join(self.input_names)})")
        env = dict(self._constants)
        for name, shape, fp16 in zip(self.input_names, self._input_shapes, self._input_fp16):
            value = torch.as_tensor(np.asarray(inputs[name]) if not isinstance(inputs[name], torch.Tensor)
                                    else inputs[name])
            if shape is not None and tuple(value.shape) != shape:
                raise EdgeError(f"{self.source}: input {name} has shape {tuple(value.shape)}, "
                                f"the program expects {shape}")
            if value.is_floating_point():
                value = value.float()
                if fp16:
                    value = value.half().float()
            env[name] = value
        for step in self._steps:
            args = dict(step.constants)
            for param, name in step.inputs:
                args[param] = env[name]
            for param, sources in step.list_inputs:
                args[param] = [s.value if isinstance(s, _Literal) else env[s] for s in sources]
            result = step.kernel(**args)
            results = result if isinstance(result, tuple) else (result,)
            for name, value, fp16 in zip(step.outputs, results, step.fp16_outputs):
                env[name] = value.half().float() if fp16 else value
                if observe is not None:
                    observe(name, env[name])
            for name in step.release:
                del env[name]
        return {name: env[name].float() for name in self.output_names}


def load_package(path: Path) -> MilProgramRunner:
    """Reads an `.mlpackage` (spec + weight blobs) and resolves its `main` function into steps."""
    path = Path(path)
    if not path.exists():
        raise EdgeError(f"{path}: no such Core ML package")
    import coremltools as ct  # heavy import: only when a package is read

    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        weights_dir = model.weights_dir
    except Exception as error:  # coremltools raises many types for a damaged package
        raise EdgeError(f"{path}: not a readable Core ML package ({type(error).__name__}: {error})") from error
    if spec.WhichOneof("Type") != "mlProgram":
        raise EdgeError(f"{path}: not a Core ML ML program (model type {spec.WhichOneof('Type')})")
    if "main" not in spec.mlProgram.functions:
        raise EdgeError(f"{path}: the ML program has no `main` function")
    return _resolve(str(path), spec.mlProgram.functions["main"], weights_dir)


def _resolve(source: str, function, weights_dir: str | None) -> MilProgramRunner:
    from coremltools.converters.mil.frontend.milproto.load import TranscriptionContext, _load_value
    from coremltools.proto import MIL_pb2

    fp16 = MIL_pb2.DataType.Value("FLOAT16")
    block = function.block_specializations[function.opset]
    context = TranscriptionContext(weights_dir or "")

    def load_value(value_spec):  # proto Value (immediate or weight blob) -> numpy / str / scalar
        try:
            return _load_value(context, value_spec)
        except Exception as error:  # a truncated or missing weight file, a malformed value
            raise EdgeError(f"{source}: cannot read a value of the program "
                            f"({type(error).__name__}: {error})") from error

    histogram = Counter(op.type for op in block.operations)
    constants = _Constants()
    steps = []
    for op in block.operations:
        if op.type not in SUPPORTED_OPS or op.blocks:
            first_output = op.outputs[0].name if op.outputs else "?"
            raise UnsupportedOpError(f"Core ML op '{op.type}' (output '{first_output}') is not supported by "
                                     f"edge's interpreter; supported: {', '.join(sorted(SUPPORTED_OPS))}")
        if op.type == "const":
            constants.values[op.outputs[0].name] = load_value(op.attributes["val"])
            continue
        arguments = {param: [load_value(a.value) if a.WhichOneof("binding") == "value" else _ValueName(a.name)
                             for a in binding.arguments] for param, binding in op.inputs.items()}
        # iOS16 constexpr ops carry their parameters as attributes
        arguments.update({param: [load_value(value)] for param, value in op.attributes.items() if param != "name"})
        if op.type in _CONSTEXPRS:
            values = {param: constants.values[args[0]] if isinstance(args[0], _ValueName) else args[0]
                      for param, args in arguments.items()}
            value = _CONSTEXPRS[op.type](**values)  # float32
            if op.outputs[0].type.tensorType.dataType == fp16:
                value = value.astype(np.float16).astype(np.float32)
            constants.values[op.outputs[0].name] = value
        else:
            steps.append(_step(op, arguments, constants, fp16))
    outputs = tuple(block.outputs)
    return MilProgramRunner(source, tuple(i.name for i in function.inputs),
                            tuple(_static_shape(i) for i in function.inputs),
                            tuple(i.type.tensorType.dataType == fp16 for i in function.inputs),
                            outputs, _with_releases(steps, outputs),
                            {name: constants.argument(name) for name in outputs if name in constants},
                            dict(histogram))


def _with_releases(steps: list[_Step], outputs: tuple[str, ...]) -> tuple[_Step, ...]:
    """Each step also drops the values it was the last to read (or made and nobody reads)."""
    last_reader: dict[str, int] = {}
    for index, step in enumerate(steps):
        for name in step.outputs:
            last_reader[name] = index
        for _, name in step.inputs:
            last_reader[name] = index
        for _, sources in step.list_inputs:
            last_reader.update({source: index for source in sources if not isinstance(source, _Literal)})
    release: dict[int, list[str]] = {}
    for name, index in last_reader.items():
        if name not in outputs:
            release.setdefault(index, []).append(name)
    return tuple(replace(step, release=tuple(release.get(index, ()))) for index, step in enumerate(steps))


class _Constants:
    """Values known at load time (const ops, decoded constexpr ops): numpy as read, for the constexpr ops;
    converted to kernel arguments on first use by a step, so packed weights are never widened unused."""

    def __init__(self):
        self.values: dict[str, object] = {}
        self._arguments: dict[str, object] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def argument(self, name: str):
        if name not in self._arguments:
            self._arguments[name] = _argument(self.values[name])
        return self._arguments[name]


class _ValueName(str):
    """An op argument bound to a named value (an input, a constant or another op's output)."""


def _argument(value):
    """A constant as a kernel argument: float arrays -> float32 tensors, other arrays -> tensors,
    0-d values -> Python scalars, strings unchanged."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item()
        if np.issubdtype(value.dtype, np.floating):
            return torch.from_numpy(value.astype(np.float32))
        if value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer):
            return torch.from_numpy(value.astype(np.bool_ if value.dtype == np.bool_ else np.int64))
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_constant(argument, constants: _Constants) -> bool:
    return not isinstance(argument, _ValueName) or argument in constants


def _constant(argument, constants: _Constants):
    return constants.argument(argument) if isinstance(argument, _ValueName) else _argument(argument)


def _static_shape(output) -> tuple[int, ...] | None:
    dims = output.type.tensorType.dimensions
    if any(d.WhichOneof("dimension") != "constant" for d in dims):
        return None
    return tuple(d.constant.size for d in dims)


@cache
def _parameter_names(kernel: Callable) -> frozenset[str]:
    return frozenset(inspect.signature(kernel).parameters)


def _step(op, arguments: dict[str, list], constants: _Constants, fp16) -> _Step:
    kernel = _KERNELS[op.type]
    unknown = set(arguments) - _parameter_names(kernel)
    if unknown:
        raise UnsupportedOpError(f"Core ML op '{op.type}' (output '{op.outputs[0].name}') has parameters "
                                 f"{', '.join(sorted(unknown))} that edge's interpreter does not support")
    static, inputs, list_inputs = {}, [], []
    shape = _static_shape(op.outputs[0]) if op.type in _STATIC_SHAPE_OPS else None
    if shape is not None:  # the program states the result's shape: only x matters
        kernel = _reshape_to
        static["shape"] = shape
        arguments = {"x": arguments["x"]}
    for param, args in arguments.items():
        if param in _LIST_PARAMS:
            sources = tuple(_Literal(_constant(a, constants)) if _is_constant(a, constants) else a for a in args)
            if all(isinstance(source, _Literal) for source in sources):
                static[param] = [source.value for source in sources]
            else:
                list_inputs.append((param, sources))
        elif _is_constant(args[0], constants):
            static[param] = _constant(args[0], constants)
        else:
            inputs.append((param, str(args[0])))
    return _Step(kernel, static, tuple(inputs), tuple(list_inputs), tuple(o.name for o in op.outputs),
                 tuple(o.type.tensorType.dataType == fp16 and op.type not in _VALUE_PRESERVING_OPS
                       for o in op.outputs))
