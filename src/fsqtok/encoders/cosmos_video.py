"""The NVIDIA Cosmos-Tokenizer factorized causal 3D video networks (discrete "DV" models).

Every 3D conv is factorized into a spatial ``(1, 3, 3)`` and a temporal ``(3, 1, 1)`` causal conv
(:class:`~fsqtok.encoders.causal.CausalConv3d`: the first frame is repeated into the past), every
GroupNorm has one group and acts per frame, and attention is a per-frame spatial block
(:class:`~fsqtok.encoders.video.FrameAttention`) followed by a causal temporal block. So latent
frame ``t`` depends only on input frames up to ``tau * t``. The levels and their resampling follow
the reference constructor (``spatial_compression``, ``temporal_compression``, ``patch_size``,
``legacy_mode``); module names follow the released checkpoints' layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .causal import CausalConv3d
from .cosmos_image import decoder_trunk, encoder_trunk, mid_block, resample_steps
from .patching import Patcher, UnPatcher
from .video import FrameAttention, FrameGroupNorm


def factorized_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """A causal ``(1, 3, 3)`` conv then a causal ``(3, 1, 1)`` conv (zero-padded in space)."""
    return nn.Sequential(CausalConv3d(in_channels, out_channels, (1, 3, 3)),
                         CausalConv3d(out_channels, out_channels, (3, 1, 1)))


class FactorizedResBlock3d(nn.Module):
    """(per-frame GroupNorm(1), SiLU, factorized conv) x 2, with a 1x1x1 skip when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(in_channels, 1)
        self.conv1 = factorized_conv(in_channels, out_channels)
        self.norm2 = FrameGroupNorm(out_channels, 1)
        self.conv2 = factorized_conv(out_channels, out_channels)
        self.skip = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TemporalAttention(nn.Module):
    """Single-head causal self-attention along time at each pixel of ``(B, C, T, H, W)``, with a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = FrameGroupNorm(channels, 1)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x).permute(0, 3, 4, 2, 1)  # (B, H, W, T, C)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        out = self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return x + out.permute(0, 4, 3, 1, 2)


def attention(channels: int) -> nn.Sequential:
    """Per-frame spatial attention, then causal temporal attention."""
    return nn.Sequential(FrameAttention(channels, 1), TemporalAttention(channels))


class HybridDownsample3d(nn.Module):
    """Halve H, W (strided conv + 2x2 average) and/or time (causal strided conv + 2-frame average), then 1x1x1."""

    def __init__(self, channels: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.conv1 = CausalConv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2))
        self.conv2 = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1))
        self.conv3 = CausalConv3d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.spatial or self.temporal):
            return x
        if self.spatial:
            x = self.conv1(x) + F.avg_pool3d(F.pad(x, (0, 1, 0, 1)), (1, 2, 2), (1, 2, 2))
        if self.temporal:  # T = 1 + 2k -> 1 + k: frame 0 alone, then pairs
            x = self.conv2(x) + F.avg_pool3d(torch.cat([x[:, :, :1], x], dim=2), (2, 1, 1), (2, 1, 1))
        return self.conv3(x)


class HybridUpsample3d(nn.Module):
    """Time ``T -> 2T - 1`` (when ``T > 1``) + causal conv, and/or H, W x2 (nearest) + conv, each residual; then 1x1x1."""

    def __init__(self, channels: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        self.conv1 = CausalConv3d(channels, channels, (3, 1, 1))
        self.conv2 = CausalConv3d(channels, channels, (1, 3, 3))
        self.conv3 = CausalConv3d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        if not (self.spatial or self.temporal):
            return x
        if self.temporal:
            if x.shape[2] > 1:
                x = x.repeat_interleave(2, dim=2)[:, :, 1:]
            x = self.conv1(x) + x
        if self.spatial:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
            x = self.conv2(x) + x
        return self.conv3(x)


class CosmosVideoEncoder(nn.Module):
    """``(B, in_channels, 1 + k * tau, H, W)`` -> ``(B, embedding_dim, 1 + k, H / s, W / s)`` (pre-FSQ latents)."""

    def __init__(self, in_channels: int, channels: int, channels_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, z_factor: int,
                 embedding_dim: int, spatial_compression: int, temporal_compression: int, patch_size: int,
                 patch_method: str) -> None:
        super().__init__()
        n = len(channels_mult)
        s_downs = resample_steps(spatial_compression, patch_size, n, "spatial")
        t_downs = resample_steps(temporal_compression, patch_size, n, "temporal")
        self.patcher3d = Patcher(patch_size, patch_method, video=True)
        self.conv_in = factorized_conv(in_channels * patch_size**3, channels)
        res, width = resolution // patch_size, channels
        self.down = nn.ModuleList()
        for i, mult in enumerate(channels_mult):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(FactorizedResBlock3d(width, channels * mult))
                width = channels * mult
                if res in attn_resolutions:
                    level.attn.append(attention(width))
            if i != n - 1:
                level.downsample = HybridDownsample3d(width, spatial=i < s_downs, temporal=i < t_downs)
                res //= 2
            self.down.append(level)
        self.mid = mid_block(width, attention(width), FactorizedResBlock3d)
        self.norm_out = FrameGroupNorm(width, 1)
        self.conv_out = factorized_conv(width, z_factor * z_channels)
        self.quant_conv = CausalConv3d(z_factor * z_channels, embedding_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return encoder_trunk(self, self.conv_in(self.patcher3d(x)))


class CosmosVideoDecoder(nn.Module):
    """``(B, embedding_dim, 1 + k, h, w)`` FSQ codes -> ``(B, out_channels, 1 + k * tau, h * s, w * s)``."""

    def __init__(self, out_channels: int, channels: int, channels_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, z_factor: int,
                 embedding_dim: int, spatial_compression: int, temporal_compression: int, patch_size: int,
                 patch_method: str, legacy_mode: bool = False) -> None:
        super().__init__()
        n = len(channels_mult)
        s_ups = resample_steps(spatial_compression, patch_size, n, "spatial")
        t_ups = resample_steps(temporal_compression, patch_size, n, "temporal")
        width = channels * channels_mult[-1]
        res = (resolution // patch_size) // 2 ** (n - 1)
        self.post_quant_conv = CausalConv3d(embedding_dim, z_channels, 1)
        self.conv_in = factorized_conv(z_channels, width)
        self.mid = mid_block(width, attention(width), FactorizedResBlock3d)
        levels: list[nn.Module] = []
        for i in reversed(range(n)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(FactorizedResBlock3d(width, channels * channels_mult[i]))
                width = channels * channels_mult[i]
                if res in attn_resolutions:
                    level.attn.append(attention(width))
            if i != 0:
                j = n - 1 - i  # the encoder level this upsampling undoes, counted from the output
                temporal = j < t_ups if legacy_mode else 0 < j < t_ups + 1
                spatial = temporal or (j < s_ups and s_ups > t_ups)
                level.upsample = HybridUpsample3d(width, spatial=spatial, temporal=temporal)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = FrameGroupNorm(width, 1)
        self.conv_out = factorized_conv(width, out_channels * patch_size**3)
        self.unpatcher3d = UnPatcher(patch_size, patch_method, video=True)

    def forward(self, z: Tensor) -> Tensor:
        return self.unpatcher3d(decoder_trunk(self, z))
