"""Causal 3D conv video encoder and decoder (MAGVIT-v2 / Cosmos style).

Every conv is causal in time (:class:`~fsqtok.encoders.causal.CausalConv3d`) and every
GroupNorm and attention acts per frame, so latent frame ``t`` depends only on input frames
``<= tau * t``. The first frame is encoded on its own: ``1 + k * tau`` frames become ``1 + k``
latent frames, and a 1-frame video is an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import AttnBlock2d, group_norm, norm_silu, residual_add
from .causal import CausalConv3d, time_context_3d


def _per_frame(fn: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2D module to every frame of ``(B, C, T, H, W)``."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class FrameGroupNorm(nn.Module):
    """GroupNorm over each frame separately (statistics never mix frames, which keeps causality)."""

    def __init__(self, channels: int, groups: int | None = None) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)

    def forward(self, x: Tensor) -> Tensor:
        return _per_frame(self.norm, x)


class FrameAttention(nn.Module):
    """Single-head spatial self-attention inside each frame."""

    def __init__(self, channels: int, norm_groups: int | None = None) -> None:
        super().__init__()
        self.attn = AttnBlock2d(channels, norm_groups)

    def forward(self, x: Tensor) -> Tensor:
        return _per_frame(self.attn, x)


class ResBlock3d(nn.Module):
    """(FrameGroupNorm, SiLU, causal 3x3x3 conv) x 2, with a 1x1x1 skip when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = FrameGroupNorm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.skip = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(norm_silu(self.norm1, x))
        h = self.conv2(norm_silu(self.norm2, h))
        return residual_add(self.skip(x), h)


class Upsample3d(nn.Module):
    """Double H and W (nearest) and, if ``temporal``, map ``T`` frames to ``2T - 1``; then a causal conv.

    In time every latent frame is repeated twice and the copy before frame 0 is dropped, so
    output frame 0 comes from latent frame 0 alone, mirroring the encoder.
    """

    def __init__(self, channels: int, temporal: bool) -> None:
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        if self.temporal:
            x = x.repeat_interleave(2, dim=2)[:, :, 1:]
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(x)


def _mid(channels: int, attention: bool) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock3d(channels, channels)]
    if attention:
        layers.append(FrameAttention(channels))
    layers.append(ResBlock3d(channels, channels))
    return nn.Sequential(*layers)


class VideoEncoder(nn.Module):
    """``(B, in_channels, 1 + k * tau, H, W)`` -> ``(B, latent_channels, 1 + k, H / f, W / f)``.

    ``f = 2 ** (len(channel_mult) - 1)`` and ``tau = 2 ** sum(temporal_downsample)``; H, W must be
    multiples of ``f`` and the frame count ``1 + k * tau`` (the tokenizer pads).
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 6,
        base_channels: int = 64,  # width of the first level
        channel_mult: Sequence[int] = (1, 2, 2, 4),  # width multiplier per level; f = 2 ** (levels - 1)
        temporal_downsample: Sequence[bool] = (True, True, False),  # per downsampling step: halve time too?
        num_res_blocks: int = 2,  # residual blocks per level
        mid_attention: bool = False,  # per-frame spatial attention in the middle
    ) -> None:
        super().__init__()
        if len(temporal_downsample) != len(channel_mult) - 1:
            raise ValueError(
                f"VideoEncoder: temporal_downsample needs {len(channel_mult) - 1} entries (one per downsampling), "
                f"got {len(temporal_downsample)}"
            )
        widths = [base_channels * m for m in channel_mult]
        self.spatial_factor = 2 ** (len(widths) - 1)
        self.temporal_factor = 2 ** sum(bool(t) for t in temporal_downsample)
        self.conv_in = CausalConv3d(in_channels, widths[0], 3)
        layers: list[nn.Module] = []
        prev = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResBlock3d(prev, width))
                prev = width
            if level < len(widths) - 1:
                stride_t = 2 if temporal_downsample[level] else 1
                layers.append(CausalConv3d(prev, prev, 3, stride=(stride_t, 2, 2)))
        self.down = nn.Sequential(*layers)
        self.mid = _mid(prev, mid_attention)
        self.norm_out = FrameGroupNorm(prev)
        self.conv_out = CausalConv3d(prev, latent_channels, 3)

    def lookback_frames(self) -> int:
        """How many input frames before ``tau * t`` latent frame ``t`` can depend on (upper bound)."""
        return time_context_3d(self)[0]

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(norm_silu(self.norm_out, h))


class VideoDecoder(nn.Module):
    """``(B, latent_channels, 1 + k, h, w)`` -> ``(B, out_channels, 1 + k * tau, h * f, w * f)``."""

    def __init__(
        self,
        out_channels: int = 3,
        latent_channels: int = 6,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        temporal_downsample: Sequence[bool] = (True, True, False),
        num_res_blocks: int = 2,
        mid_attention: bool = False,
    ) -> None:
        super().__init__()
        if len(temporal_downsample) != len(channel_mult) - 1:
            raise ValueError(
                f"VideoDecoder: temporal_downsample needs {len(channel_mult) - 1} entries, "
                f"got {len(temporal_downsample)}"
            )
        widths = [base_channels * m for m in channel_mult]
        prev = widths[-1]
        self.conv_in = CausalConv3d(latent_channels, prev, 3)
        self.mid = _mid(prev, mid_attention)
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock3d(prev, widths[level]))
                prev = widths[level]
            if level > 0:
                layers.append(Upsample3d(prev, temporal=bool(temporal_downsample[level - 1])))
        self.up = nn.Sequential(*layers)
        self.norm_out = FrameGroupNorm(prev)
        self.conv_out = CausalConv3d(prev, out_channels, 3)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(norm_silu(self.norm_out, h))
