"""Export rewrites a backend can ask for by name: exact module swaps that keep the maths.

A runtime that lacks a kernel for some op falls back to a slow portable one and splits the graph
into delegate partitions around it. These swaps express such ops with primitives every delegate has
(4-D means over the two innermost axes, elementwise ops, convolutions), or in the form a quantizer
needs (1x1 convs as linears). Each takes a module and returns a rewritten copy; the original is untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class PrimitiveGroupNorm(nn.Module):
    """GroupNorm from 4-D means: (B, C, *S) -> view (B, G, C/G, prod S), normalise over the last two."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = norm.num_groups, norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        grouped = x.view(batch, self.groups, channels // self.groups, -1)
        centered = grouped - grouped.mean(dim=(2, 3), keepdim=True)
        variance = (centered * centered).mean(dim=(2, 3), keepdim=True)
        normalised = (centered * torch.rsqrt(variance + self.eps)).view(x.shape)
        affine_shape = (1, channels) + (1,) * (x.dim() - 2)
        return normalised * self.weight.view(affine_shape) + self.bias.view(affine_shape)


class PrimitiveLayerNorm(nn.Module):
    """LayerNorm over the last axis of (rows, C) tokens, as 4-D means over (1, rows, C, 1)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, channels = x.shape
        grid = x.view(1, rows, channels, 1)
        centered = grid - grid.mean(dim=(2, 3), keepdim=True)
        variance = (centered * centered).mean(dim=(2, 3), keepdim=True)
        normalised = (centered * torch.rsqrt(variance + self.eps)).view(rows, channels)
        return normalised * self.weight + self.bias


class TransposedConvUpsample(nn.Module):
    """Nearest 2x upsampling + the following conv, the upsampling as a depthwise 2x2 transposed conv of ones."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        self.register_buffer("ones", torch.ones(conv.in_channels, 1, 2, 2), persistent=False)

    def forward(self, x: torch.Tensor, *_ignored) -> torch.Tensor:
        doubled = F.conv_transpose2d(x, self.ones, stride=2, groups=x.shape[1])  # (B, C, 2H, 2W)
        return self.conv(doubled)


class SubpixelUpsampleConv(nn.Module):
    """Nearest 2x upsampling + the following 3x3 conv (stride 1, padding 1) as one dense 4x4 transposed conv of
    stride 2: the same sums, regrouped.

    An output pixel's 3x3 window over the upsampled map covers a 2x2 window of the input, so each input pixel
    meets the sum of the 3x3 taps that land on it: along each axis, transposed-conv tap k gathers the conv taps
    TAPS[k] (k = 0..3 <- {2}, {1, 2}, {0, 1}, {0}). The result takes 16/9 of the conv's weights but 4/9 of its
    multiply-adds, never forms the upsampled map, and is a dense conv that int8 quantizers annotate (the
    depthwise transposed conv of TransposedConvUpsample stays float).
    """

    TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))  # (4, 3): which conv taps each transposed-conv tap sums

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        taps = torch.tensor(self.TAPS, dtype=conv.weight.dtype)
        weight = torch.einsum("kd,le,oide->iokl", taps, taps, conv.weight.detach())  # (C_in, C_out, 4, 4)
        self.weight = nn.Parameter(weight)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    @staticmethod
    def fits(conv: nn.Conv2d) -> bool:
        return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")

    def forward(self, x: torch.Tensor, *_ignored) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=1)  # (B, C_out, 2H, 2W)


class PointwiseConvAsLinear(nn.Module):
    """A 1x1 conv (stride 1, no padding, one group) as a linear over the channel axis of (B, H*W, C) tokens.
    For quantizers whose low-bit weights serve fully connected layers only."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        self.linear.weight = nn.Parameter(conv.weight.detach().flatten(1).clone())  # (C_out, C_in, 1, 1) -> (C_out, C_in)
        if conv.bias is not None:
            self.linear.bias = nn.Parameter(conv.bias.detach().clone())

    @staticmethod
    def fits(module: nn.Module) -> bool:
        return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
                and module.padding in ((0, 0), "valid") and module.dilation == (1, 1) and module.groups == 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # through a view, not a 4-D permute: XNNPACK's layout pass would tag a permute of a conv's output as
        # channels-last, and its linear would then find a layout copy between it and its run-time quantization
        batch, _, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        return self.linear(tokens).transpose(1, 2).reshape(batch, -1, height, width)  # -> (B, C_out, H, W)


class BatchOneConv(nn.Module):
    """A conv (or conv module) whose every convolution sees batch 1, for delegates without batched
    convolutions (Vulkan). A single-channel conv (the Local-λ kernel over (B*V, 1, H, W)) becomes one
    grouped conv over (1, B*V, H, W) with the kernel repeated per group; any other runs once per sample
    (the weights stay shared) and the samples are joined on the batch axis."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor, *rest) -> torch.Tensor:
        batch = x.shape[0]
        if batch == 1:
            return self.conv(x, *rest)
        conv = self.conv
        if isinstance(conv, nn.Conv2d) and conv.in_channels == 1 and conv.groups == 1 and conv.padding_mode == "zeros":
            weight = conv.weight.repeat(batch, 1, 1, 1)  # (B*K, 1, r, r): group b is sample b's kernel
            bias = None if conv.bias is None else conv.bias.repeat(batch)
            y = F.conv2d(x.view(1, batch, *x.shape[2:]), weight, bias, conv.stride, conv.padding, conv.dilation,
                         groups=batch)  # (1, B*K, H', W')
            return y.view(batch, conv.out_channels, *y.shape[2:])
        return torch.cat([conv(x[i:i + 1], *rest) for i in range(batch)])  # (B, O, H', W')


class PlainAttentionProcessor:
    """A diffusers attention processor computing softmax(q kᵀ / sqrt(d)) v with bmm and a last-axis softmax.

    Same maths as diffusers' scaled_dot_product_attention path for the VAE's self-attention (no mask,
    no dropout); SDPA's export decomposition brings masks and `where` that delegates lack.
    """

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        if encoder_hidden_states is not None or attention_mask is not None or attn.spatial_norm is not None:
            raise NotImplementedError("PlainAttentionProcessor covers unmasked self-attention only")
        residual = hidden_states
        batch, channels, height, width = hidden_states.shape
        tokens = hidden_states.view(batch, channels, height * width)  # (B, C, N)
        if attn.group_norm is not None:
            tokens = attn.group_norm(tokens)
        tokens = tokens.transpose(1, 2)  # (B, N, C)
        query, key, value = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)  # (B, N, h*d)
        heads, n = attn.heads, height * width
        head_dim = query.shape[-1] // heads
        split = lambda t: t.view(batch, n, heads, head_dim).transpose(1, 2).reshape(batch * heads, n, head_dim)
        scores = torch.bmm(split(query) * attn.scale, split(key).transpose(1, 2)).softmax(dim=-1)  # (B*h, N, N)
        mixed = torch.bmm(scores, split(value)).view(batch, heads, n, head_dim).transpose(1, 2)  # (B, N, h, d)
        out = attn.to_out[0](mixed.reshape(batch, n, heads * head_dim))
        out = out.transpose(1, 2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def plain_attention(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module)
    for child in module.modules():
        if type(child).__name__ == "Attention" and hasattr(child, "set_processor"):
            child.set_processor(PlainAttentionProcessor())
    return module


def _is_nearest_upsample(module: nn.Module) -> bool:
    # ours (edge.models.unet.Upsample) and diffusers' Upsample2D as the VAE uses it
    if type(module).__name__ == "Upsample" and isinstance(getattr(module, "conv", None), nn.Conv2d):
        return True
    return (type(module).__name__ == "Upsample2D" and not module.use_conv_transpose and module.norm is None
            and module.interpolate and isinstance(getattr(module, "conv", None), nn.Conv2d))


def _swap(module: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            replacement = replace(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    return module


def decompose_norms(module: nn.Module) -> nn.Module:
    def replace(child):
        if isinstance(child, nn.GroupNorm):
            return PrimitiveGroupNorm(child)
        if isinstance(child, nn.LayerNorm) and len(child.normalized_shape) == 1:
            return PrimitiveLayerNorm(child)
        return None

    return _swap(module, replace)


def decompose_group_norms(module: nn.Module) -> nn.Module:
    """GroupNorm only (LayerNorm stays one op, which Core ML has natively)."""
    return _swap(module, lambda child: PrimitiveGroupNorm(child) if isinstance(child, nn.GroupNorm) else None)


def upsample_as_transposed_conv(module: nn.Module) -> nn.Module:
    return _swap(module, lambda child: TransposedConvUpsample(child.conv) if _is_nearest_upsample(child) else None)


def decoder_upsample_as_subpixel_deconv(module: nn.Module) -> nn.Module:
    """The VAE decoder's upsamplers (diffusers' Upsample2D) only: there they run at up to 512x512, and the extra
    7/9 of their weights is 4 MB. The UNet's two would add 14 MB to the int8 UNet's size budget."""
    def replace(child):
        fits = type(child).__name__ == "Upsample2D" and _is_nearest_upsample(child)
        return SubpixelUpsampleConv(child.conv) if fits and SubpixelUpsampleConv.fits(child.conv) else None

    return _swap(module, replace)


def pointwise_convs_as_linears(module: nn.Module) -> nn.Module:
    return _swap(module, lambda child: PointwiseConvAsLinear(child) if PointwiseConvAsLinear.fits(child) else None)


def batch_one_convolutions(module: nn.Module) -> nn.Module:
    """Every Conv2d, and every TransposedConvUpsample as a whole, wrapped in BatchOneConv."""
    def replace(child):
        if isinstance(child, nn.Conv2d | TransposedConvUpsample):
            return BatchOneConv(child)
        return None

    return _swap_outermost(module, replace)


def _swap_outermost(module: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """Like _swap, but the children of a replaced module are left alone."""
    module = copy.deepcopy(module)

    def visit(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            replacement = replace(child)
            if replacement is None:
                visit(child)
            else:
                setattr(parent, name, replacement)

    visit(module)
    return module


REWRITES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "decompose-norms": decompose_norms,
    "decompose-group-norms": decompose_group_norms,
    "upsample-as-transposed-conv": upsample_as_transposed_conv,
    "decoder-upsample-as-subpixel-deconv": decoder_upsample_as_subpixel_deconv,
    "plain-attention": plain_attention,
    "pointwise-conv-as-linear": pointwise_convs_as_linears,
    "batch-one-convolutions": batch_one_convolutions,
}
