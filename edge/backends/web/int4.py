"""The web target's int4 mode: every weight of a Conv, Gemm or MatMul stored in 4 bits, folded to float32 as the session loads.

A weight is cut into blocks of 32 values along one axis: a Conv's or Gemm's input channels (a block never mixes two
output channels), a batched MatMul constant's first axis (the λ relative-position tables, (positions, K, L)). Each
block is stored as 32 signed 4-bit codes and one float16 scale: 4.5 bits per weight against fp32's 32. In the graph:

    codes (INT4, the weight's shape) --DequantizeLinear(scales, block_size 32, axis)--> float16 --Cast--> weight

Both inputs are constants, so onnxruntime folds the two nodes into the float32 weight when it creates the session,
provided the session is told not to keep DequantizeLinear nodes for QDQ fusion (`session.disable_quant_qdq`: the
page sets it for int4 bundles, `WebBackend.load` for graphs that carry FOLD_METADATA): the download is 4-bit, the
arithmetic the fp32 graph's, and folding holds at most the codes, one float16 and one float32 copy of the weights
(the full-size UNet loads in the browser's 4 GB WASM heap; an expansion of more nodes did not). Without the option
the nodes run at every call, with the same numbers. DequantizeLinear with INT4 and blocks is opset 21.

The 4-bit MatMul kernel onnxruntime-web has (MatMulNBits) would serve only the Gemms and 2-D MatMuls, 18% of the
UNet's weight bytes and 7% of its onnxruntime time; 76% of the bytes are convolutions, which no onnxruntime-web
kernel runs in 4 bits.

Each block's scale is the one of a few clipped ranges (the block's peak times 1.0 .. 0.7) whose codes give the least
squared error: clipping the rare large weight of a block buys precision for the other 31.

The VAE encoder keeps 8-bit codes (INT8, the same blocks): measured on moebius-tiny-trained, 4 bits cost it 35 dB of
SQNR (61 -> 26 dB) and the held-out rocket 2.2 dB of masked PSNR, for 17 MB of the full-size download.
"""

from __future__ import annotations

import numpy as np

BLOCK = 32
OPSET = 21  # DequantizeLinear of INT4 codes in blocks
CLIPS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
BITS = 4
BITS_BY_GRAPH = {"encoder": 8}
FOLD_METADATA = ("edge.fold_dequantize", "weights stored in blocks: fold DequantizeLinear at load")


def block_axis(weight, reader: str) -> int | None:
    """The axis the blocks run along for this float weight read by `reader`, or None: it stays float32."""
    from onnx import TensorProto

    dims = list(weight.dims)
    if weight.data_type != TensorProto.FLOAT or len(dims) < 2:
        return None
    axis = 0 if reader == "MatMul" and len(dims) == 3 else 1
    return axis if dims[axis] % BLOCK == 0 else None


def quantize_blocks(weight: np.ndarray, axis: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """A float weight -> signed codes of `bits` bits (int8, the weight's shape) and float16 scales (the weight's shape
    with axis `axis` divided by 32), blocks of 32 consecutive values along that axis."""
    along = np.moveaxis(weight.astype(np.float32), axis, -1)  # (..., D): the blocked axis last
    blocks = along.reshape(-1, BLOCK)  # (S/32, 32)
    peak = np.abs(blocks).max(axis=1, keepdims=True)  # (S/32, 1)
    codes, scales, errors = _clipped(blocks, peak, CLIPS[0], bits)
    for clip in CLIPS[1:]:
        clipped_codes, clipped_scales, clipped_errors = _clipped(blocks, peak, clip, bits)
        better = clipped_errors < errors  # (S/32, 1): per block
        codes = np.where(better, clipped_codes, codes)
        scales = np.where(better, clipped_scales, scales)
        errors = np.minimum(clipped_errors, errors)
    codes = np.moveaxis(codes.reshape(along.shape), -1, axis)
    scales = np.moveaxis(scales.reshape(*along.shape[:-1], along.shape[-1] // BLOCK), -1, axis)
    return codes.astype(np.int8), scales


def _clipped(blocks: np.ndarray, peak: np.ndarray, clip: float, bits: int):
    """Codes, float16 scales and squared error per block with the range clipped to clip * peak."""
    top = 2 ** (bits - 1) - 1  # 7 for 4 bits: codes -8..7
    scales = (peak * clip / top).astype(np.float16)  # rounded as they will be stored
    step = np.where(scales == 0, 1, scales).astype(np.float32)  # an all-zero block: codes 0 whatever the step
    codes = np.clip(np.round(blocks / step), -top - 1, top)
    return codes, scales, ((codes * step - blocks) ** 2).sum(axis=1, keepdims=True)


def stored_codes(name: str, codes: np.ndarray, bits: int):
    """The codes as an ONNX initializer: INT8 one per byte; INT4 two per byte in memory order, the first in the low
    nibble."""
    from onnx import TensorProto, helper, numpy_helper

    if bits == 8:
        return numpy_helper.from_array(codes, name)
    nibbles = codes.flatten().astype(np.uint8) & 0x0F
    packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()
    return helper.make_tensor(name, TensorProto.INT4, codes.shape, packed, raw=True)


def store_weights_in_blocks(payload: bytes, bits: int) -> tuple[bytes, int]:
    """The graph with every Conv/Gemm/MatMul weight that blocks fit (`block_axis`) stored in `bits` (4 or 8) bits;
    returns the new graph and how many weights it stores so. The rest (a 3-channel image's first convolution,
    depthwise and position convs, biases, norms) stays float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(payload)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, OPSET)  # 18 -> 21 only widened the types these graphs' ops take
    initializers = {init.name: init for init in model.graph.initializer}
    axes = {name: block_axis(initializers[name], node.op_type) for node in model.graph.node
            if node.op_type in ("Conv", "Gemm", "MatMul") for name in node.input if name in initializers}
    weights = sorted(name for name, axis in axes.items() if axis is not None)
    expansions = []
    for name in weights:
        codes, scales = quantize_blocks(numpy_helper.to_array(initializers[name]), axes[name], bits)
        initializers[name].CopyFrom(stored_codes(f"{name}.codes", codes, bits))
        model.graph.initializer.append(numpy_helper.from_array(scales, f"{name}.scale"))
        expansions += [
            helper.make_node("DequantizeLinear", [f"{name}.codes", f"{name}.scale"], [f"{name}.float16"],
                             name=f"{name}.dequantize", axis=axes[name], block_size=BLOCK),
            helper.make_node("Cast", [f"{name}.float16"], [name], name=f"{name}.expand", to=TensorProto.FLOAT)]
    nodes_in_order = [*expansions, *model.graph.node]  # each expansion before its readers: still topologically sorted
    del model.graph.node[:]
    model.graph.node.extend(nodes_in_order)
    onnx.helper.set_model_props(model, dict([FOLD_METADATA]))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(), len(weights)
