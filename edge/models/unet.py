"""The Moebius UNet: a latent-diffusion inpainting UNet built from LλMI blocks.

One module, plain torch, in the spirit of nanoGPT. Module names and parameter shapes follow the
published checkpoint (`embedding_layer.*` + `diff_model.*`), so it loads with strict=True.

Layout. Convolutional parts (ResNet blocks, up/down sampling) run channels-first, (B, C, H, W).
Inside a transformer block the image is a table of tokens, (B*N, C) with N = H*W, because every
operation there is per-token (LayerNorm, 1x1 projections, BatchNorm in eval mode) or a per-position
matrix product (the λ read-out), and all of those want channels last. The block enters and leaves
that layout once (two permutes around the transformer, one each way around the depthwise conv of
the feed-forward), instead of the published code's einops round trips.

Export. `LambdaUNet.forward` takes the sinusoidal timestep features as an input (computed in fp32
outside the graph, see `timestep_features`) and the 10-token conditioning as a float tensor, so a
graph exported from it has no int64 inputs and no trigonometry that fp16 would ruin. The Local-λ
position conv is a Conv2d over (B*V, 1, H, W) (the checkpoint's Conv3d with kernel (1, r, r) folded
into the batch), and the Interactive-λ relative-position embedding is used as stored (the
published gather by `meshgrid(arange(n*n), arange(m))` is an identity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NUM_CONDITIONING_TOKENS = 10  # rows 0..9 of the embedding table: cond prompt; 10..19: uncond
LOCAL_LAMBDA_KERNEL = 15  # receptive field r of the Local-λ position lambda
RESNET_LAYERS_PER_BLOCK = 2  # down blocks; up blocks have one more
NORM_EPS = 1e-5  # ResNet GroupNorms, conv_norm_out, LayerNorms, BatchNorms
TRANSFORMER_GROUPNORM_EPS = 1e-6


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    heads: int  # query heads per λ layer ("attention_head_dim" in the published config)
    norm_num_groups: int
    cross_attention_dim: int  # width of the conditioning tokens seen by Interactive-λ
    encoder_hid_dim: int  # width of the embedding table
    mix_mlp_ratio: float
    latent_size: int  # latent side at the published resolution; fixes the rel-pos embeddings

    @property
    def time_features(self) -> int:
        return self.block_out_channels[0]

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_out_channels[0]


def timestep_features(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal timestep features, (T,) -> (T, dim) float32, cos half first (flip_sin_to_cos).

    Computed in float32 outside any exported graph: sin/cos of t*freq with t up to 999 lose all
    accuracy in fp16, so an app feeds these rows (the manifest ships one per sampling step).
    """
    half = dim // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half
    angles = timesteps.to(torch.float32)[:, None] * torch.exp(exponent)[None, :]  # (T, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


# ----------------------------------------------------------------------------- storage adapters


class TokenProjection(nn.Linear):
    """A 1x1 convolution applied to tokens (rows, C_in) -> (rows, C_out).

    The checkpoint stores the weight as a conv kernel (C_out, C_in, 1, 1); it is held as a linear
    weight so that the exported graph is one matmul with a constant weight, no reshape.
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        weight = destination[prefix + "weight"]
        destination[prefix + "weight"] = weight.view(*weight.shape, 1, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "weight"
        if key in state_dict and state_dict[key].dim() == 4:
            state_dict[key] = state_dict[key].flatten(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PositionLambdaConv(nn.Conv2d):
    """The Local-λ position lambda: a 1 -> K conv with an r x r kernel over each value channel.

    Published as Conv3d(1, K, (1, r, r)) over V shaped (B, 1, V, H, W); here the value channels
    are folded into the batch, (B*V, 1, H, W), and the checkpoint's (K, 1, 1, r, r) kernel is
    held as (K, 1, r, r).
    """

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = destination[prefix + "weight"].unsqueeze(2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "weight"
        if key in state_dict and state_dict[key].dim() == 5:
            state_dict[key] = state_dict[key].squeeze(2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# ----------------------------------------------------------------------------- convolutional parts


class DepthwiseSeparableConv(nn.Module):
    """depthwise kxk -> BatchNorm -> ReLU -> pointwise 1x1 -> BatchNorm, + input when shapes match."""

    batch_norm_pairs = (("conv_dw", "bn1"), ("conv_pw", "bn2"))  # (producer, its BatchNorm): foldable

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                 groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.has_skip = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(F.relu(self.bn1(self.conv_dw(x)))))
        return x + y if self.has_skip else y


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> DWConv -> + time -> GroupNorm -> SiLU -> DWConv, + (projected) input."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=NORM_EPS)
        self.conv1 = DepthwiseSeparableConv(in_channels, out_channels)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=NORM_EPS)
        self.conv2 = DepthwiseSeparableConv(out_channels, out_channels)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb_silu: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W); temb_silu: (B or 1, temb_channels), SiLU already applied
        h = self.conv1(F.silu(self.norm1(x)))
        time = self.time_emb_proj(temb_silu)  # (B or 1, C_out)
        h = h + time.view(*time.shape, 1, 1)
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# ----------------------------------------------------------------------------- λ layers


class LocalLambda(nn.Module):
    """Local-λ self-interaction (multi-query lambda layer with a local position lambda).

    For every position n: y_n = q_n · (λc + λp_n), per head, where
      λc   = softmax_positions(k)ᵀ v                     content lambda, (K, V), shared by positions
      λp_n = Σ_{|δ|<=r/2} E_δ v_{n+δ}                     position lambda, (K, V), from an r x r conv

    The lambdas are formed transposed, λ_nᵀ (V, K): the position conv yields (B, V*K, N), and bringing N to the
    front is then one batched 2-D transpose. Forming λ_n (K, V) needs the 4-D reversal (B, V, K, N) -> (B, N, K, V),
    which onnxruntime's Transpose runs 18x slower (on the web target: 2.8 s of the fp32 UNet's 5.4 s).
    """

    batch_norm_pairs = (("to_q", "norm_q"), ("to_v", "norm_v"))

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, dim // heads, dim // heads
        self.to_q = TokenProjection(dim, self.key_dim * heads, bias=False)
        self.to_k = TokenProjection(dim, self.key_dim, bias=False)
        self.to_v = TokenProjection(dim, self.value_dim, bias=False)
        self.norm_q = nn.BatchNorm1d(self.key_dim * heads)
        self.norm_v = nn.BatchNorm1d(self.value_dim)
        self.pos_conv = PositionLambdaConv(1, self.key_dim, LOCAL_LAMBDA_KERNEL, padding=LOCAL_LAMBDA_KERNEL // 2)

    def forward(self, x: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
        # x: (B*N, C) tokens, row-major over (B, H, W)
        n, kd, vd = height * width, self.key_dim, self.value_dim
        q = self.norm_q(self.to_q(x))  # (B*N, h*K)
        k = self.to_k(x).view(batch, n, kd).transpose(1, 2).softmax(dim=-1)  # (B, K, N), over positions
        v = self.norm_v(self.to_v(x)).view(batch, n, vd)  # (B, N, V)
        content = torch.bmm(k, v)  # (B, K, V)
        v_planes = v.transpose(1, 2).reshape(batch * vd, 1, height, width)  # (B*V, 1, H, W)
        position = self.pos_conv(v_planes).view(batch, vd * kd, n).transpose(1, 2)  # (B, N, V*K)
        lambdas_t = position.reshape(batch, n, vd, kd) + content.transpose(1, 2).reshape(batch, 1, vd, kd)  # (B, N, V, K)
        q_t = q.view(batch * n, self.heads, kd).transpose(1, 2)  # (B*N, K, h)
        y_t = torch.bmm(lambdas_t.reshape(batch * n, vd, kd), q_t)  # (B*N, V, h) = (q_n λ_n)ᵀ
        return y_t.transpose(1, 2).reshape(batch * n, self.heads * vd)


class InteractiveLambda(nn.Module):
    """Interactive-λ cross-interaction: image queries read lambdas built from the L condition tokens.

    y_n = q_n · (λc + λp_n) per head, with
      λc   = softmax_tokens(k)ᵀ v                       (K, V) from the tokens
      λp_n = Σ_m E[n, m] v_m                           E: a learned (N, L, K) embedding, one row per position
    q_n · λp_n is evaluated as (q_n Eₙ) v: (h, K)(K, L)(L, V), cheaper than forming λp_n.
    """

    batch_norm_pairs = (("to_q", "norm_q"), ("to_v", "norm_v"))

    def __init__(self, dim: int, heads: int, context_dim: int, positions: int):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, dim // heads, dim // heads
        self.to_q = TokenProjection(dim, self.key_dim * heads, bias=False)
        self.to_k = nn.Linear(context_dim, self.key_dim, bias=False)
        self.to_v = nn.Linear(context_dim, self.value_dim, bias=False)
        self.norm_q = nn.BatchNorm1d(self.key_dim * heads)
        self.norm_v = nn.BatchNorm1d(self.value_dim)
        # held as (N, K, L); the checkpoint stores (N, L, K, 1)
        self.rel_pos_emb = nn.Parameter(torch.randn(positions, self.key_dim, NUM_CONDITIONING_TOKENS))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "rel_pos_emb"] = destination[prefix + "rel_pos_emb"].transpose(1, 2).unsqueeze(-1).contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "rel_pos_emb"
        if key in state_dict and state_dict[key].dim() == 4:
            state_dict[key] = state_dict[key].squeeze(-1).transpose(1, 2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, context: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
        # x: (B*N, C) tokens; context: (B, L, D) condition tokens
        n, tokens, vd = height * width, context.shape[1], self.value_dim
        h, kd = self.heads, self.key_dim
        q = self.norm_q(self.to_q(x)).view(batch, n, h * kd)  # (B, N, h*K)
        k = self.to_k(context).transpose(1, 2).softmax(dim=-1)  # (B, K, L), normalised over tokens
        v = self.norm_v(self.to_v(context).view(batch * tokens, vd)).view(batch, tokens, vd)  # (B, L, V)
        content = torch.bmm(k, v)  # (B, K, V)
        q_by_position = q.transpose(0, 1).reshape(n, batch * h, kd)  # (N, B*h, K)
        q_rel = torch.bmm(q_by_position, self.rel_pos_emb)  # (N, B*h, L): q_n E_n
        q_rel = q_rel.view(n, batch, h * tokens).transpose(0, 1).reshape(batch, n * h, tokens)  # (B, N*h, L)
        y = torch.bmm(q.view(batch, n * h, kd), content) + torch.bmm(q_rel, v)  # (B, N*h, V)
        return y.reshape(batch * n, h * vd)


class GLUMBConv(nn.Module):
    """The gated MBConv feed-forward: 1x1 expand + SiLU -> depthwise 3x3 -> value * SiLU(gate) -> 1x1."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.inverted_conv = nn.Module()
        self.inverted_conv.conv = nn.Conv2d(dim, 2 * hidden, 1)
        self.depth_conv = nn.Module()
        self.depth_conv.conv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.point_conv = nn.Module()
        self.point_conv.conv = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) -> (B, C, H, W)
        h = self.depth_conv.conv(F.silu(self.inverted_conv.conv(x)))  # (B, 2*hidden, H, W)
        hidden = h.shape[1] // 2
        value, gate = h[:, :hidden], h[:, hidden:]
        return self.point_conv.conv(value * F.silu(gate))


class LambdaTransformerBlock(nn.Module):
    """LayerNorm -> Local-λ -> LayerNorm -> Interactive-λ -> LayerNorm -> GLU-MBConv, each residual."""

    def __init__(self, dim: int, heads: int, context_dim: int, positions: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn1 = LocalLambda(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.attn2 = InteractiveLambda(dim, heads, context_dim, positions)
        self.norm3 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.ff = GLUMBConv(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
        # x: (B*N, C) tokens -> (B, C, H, W): the feed-forward's depthwise conv needs the image layout,
        # and the caller's output projection is a channels-first conv anyway.
        x = x + self.attn1(self.norm1(x), batch, height, width)
        x = x + self.attn2(self.norm2(x), context, batch, height, width)
        channels = x.shape[1]
        as_image = lambda t: t.view(batch, height, width, channels).permute(0, 3, 1, 2)
        return as_image(x) + self.ff(as_image(self.norm3(x)))


class LambdaTransformer(nn.Module):
    """GroupNorm -> 1x1 in -> one LλMI block over tokens -> 1x1 out, + input."""

    def __init__(self, dim: int, heads: int, groups: int, context_dim: int, positions: int, mlp_ratio: float):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=TRANSFORMER_GROUPNORM_EPS)
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.transformer_blocks = nn.ModuleList([LambdaTransformerBlock(dim, heads, context_dim, positions, mlp_ratio)])
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        h = self.proj_in(self.norm(x))
        tokens = h.permute(0, 2, 3, 1).reshape(batch * height * width, channels)  # (B*N, C)
        h = self.transformer_blocks[0](tokens, context, batch, height, width)  # (B, C, H, W)
        return self.proj_out(h) + x


# ----------------------------------------------------------------------------- UNet stages


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, cfg: UNetConfig, latent_side: int, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()
        for i in range(RESNET_LAYERS_PER_BLOCK):
            self.resnets.append(ResnetBlock(in_channels if i == 0 else out_channels, out_channels,
                                            cfg.time_embed_dim, cfg.norm_num_groups))
            self.attentions.append(LambdaTransformer(out_channels, cfg.heads, cfg.norm_num_groups,
                                                     cfg.cross_attention_dim, latent_side**2, cfg.mix_mlp_ratio))
        self.downsamplers = nn.ModuleList([Downsample(out_channels)]) if downsample else None

    def forward(self, x: torch.Tensor, temb_silu: torch.Tensor, context: torch.Tensor):
        skips = []
        for resnet, attention in zip(self.resnets, self.attentions):
            x = attention(resnet(x, temb_silu), context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, prev_channels: int, out_channels: int, cfg: UNetConfig,
                 latent_side: int, upsample: bool):
        super().__init__()
        layers = RESNET_LAYERS_PER_BLOCK + 1
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()
        for i in range(layers):
            skip_channels = in_channels if i == layers - 1 else out_channels
            resnet_in = prev_channels if i == 0 else out_channels
            self.resnets.append(ResnetBlock(resnet_in + skip_channels, out_channels,
                                            cfg.time_embed_dim, cfg.norm_num_groups))
            self.attentions.append(LambdaTransformer(out_channels, cfg.heads, cfg.norm_num_groups,
                                                     cfg.cross_attention_dim, latent_side**2, cfg.mix_mlp_ratio))
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if upsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb_silu: torch.Tensor, context: torch.Tensor):
        # skips are consumed last-first
        for resnet, attention, skip in zip(self.resnets, self.attentions, reversed(skips)):
            x = attention(resnet(torch.cat([x, skip], dim=1), temb_silu), context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class TimestepEmbedding(nn.Module):
    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


class LambdaUNet(nn.Module):
    """The denoiser (`diff_model.*`): (latent, timestep features, condition tokens) -> noise."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        widths = cfg.block_out_channels
        self.conv_in = DepthwiseSeparableConv(cfg.in_channels, widths[0])
        self.time_embedding = TimestepEmbedding(cfg.time_features, cfg.time_embed_dim)
        self.encoder_hid_proj = nn.Linear(cfg.encoder_hid_dim, cfg.cross_attention_dim)

        sides = [cfg.latent_size // 2**i for i in range(len(widths))]  # latent side at each level
        self.down_blocks = nn.ModuleList()
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            self.down_blocks.append(DownBlock(widths[max(i - 1, 0)], width, cfg, sides[i], downsample=not last))

        self.up_blocks = nn.ModuleList()
        reversed_widths = list(reversed(widths))
        for i, width in enumerate(reversed_widths):
            last = i == len(widths) - 1
            skip_width = reversed_widths[min(i + 1, len(widths) - 1)]
            prev_width = reversed_widths[max(i - 1, 0)]
            self.up_blocks.append(UpBlock(skip_width, prev_width, width, cfg, sides[-1 - i], upsample=not last))

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, widths[0], eps=NORM_EPS)
        self.conv_out = DepthwiseSeparableConv(widths[0], cfg.out_channels)

    def forward(self, latent: torch.Tensor, time_features: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # latent: (B, 9, H, W) = [noisy latent 4 | mask 1 | masked-image latent 4]
        # time_features: (B or 1, F) from `timestep_features`; context: (B, L, D) projected condition tokens
        temb_silu = F.silu(self.time_embedding(time_features))  # every ResNet applies SiLU to it first
        x = self.conv_in(latent)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb_silu, context)
            skips.extend(block_skips)
        for block in self.up_blocks:
            count = len(block.resnets)
            x = block(x, skips[-count:], temb_silu, context)
            skips = skips[:-count]
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class MoebiusUNet(nn.Module):
    """The published wrapper: embedding table of the 20 condition ids + the denoiser.

    forward(latent (B,9,H,W) f32, timesteps (B,) or (1,), input_ids (B,10) int64) -> noise (B,4,H,W).
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        self.embedding_layer = nn.Embedding(2 * NUM_CONDITIONING_TOKENS, cfg.encoder_hid_dim)
        self.diff_model = LambdaUNet(cfg)

    def condition_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, 10) ids -> (B, 10, cross_attention_dim) tokens for Interactive-λ."""
        return self.diff_model.encoder_hid_proj(self.embedding_layer(input_ids))

    def forward(self, latent: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        features = timestep_features(timesteps.reshape(-1), self.config.time_features).to(latent.dtype)
        return self.diff_model(latent, features, self.condition_tokens(input_ids))


def cfg_input_ids(batch: int = 1) -> torch.Tensor:
    """The fixed classifier-free-guidance ids, uncond first: (2*batch, 10) int64."""
    cond = torch.arange(NUM_CONDITIONING_TOKENS)
    uncond = cond + NUM_CONDITIONING_TOKENS
    return torch.cat([uncond.expand(batch, -1), cond.expand(batch, -1)])
