"""Building blocks shared by the modality networks, and the switch to their inference forms.

2D blocks follow the VQGAN/MaskGIT encoder-decoder (GroupNorm, SiLU, 3x3 convs, single-head
mid attention). The causal 1D and 3D convolutions and streaming live in :mod:`.causal`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int | None = None) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 2 channels each, or exactly ``groups`` groups.

    32 groups as in VQGAN when ``channels`` allows; narrow (tiny) layers get fewer, wider groups,
    so a group never holds a single value when the feature map is 1x1. Ports of released models
    pass their own ``groups`` (Cosmos: 32 in 2D, 1 in 3D).
    """
    if groups is None:
        groups = math.gcd(32, channels)
        if groups == channels and channels > 1:
            groups = math.gcd(32, channels // 2)
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def eager_inference() -> bool:
    """Whether the inference forms (in place, straight to oneDNN, other layouts) may run: autograd is off
    and no tracer (``torch.compile``, ``torch.export`` / ONNX) is recording the graph."""
    return not (torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.compiler.is_exporting())


def residual_add(x: Tensor, h: Tensor) -> Tensor:
    """``x + h``, written into ``h`` (a branch's fresh output) at inference: the same sums, no new buffer."""
    return h.add_(x) if eager_inference() else x + h


def norm_silu(norm: nn.Module, x: Tensor) -> Tensor:
    """``silu(norm(x))``, the SiLU in place on the norm's fresh output at inference (same values)."""
    return F.silu(norm(x), inplace=eager_inference())


class ResBlock2d(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, 3x3 conv) x 2, 1x1 skip when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int | None = None) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(norm_silu(self.norm1, x))
        h = self.conv2(norm_silu(self.norm2, h))
        return residual_add(self.skip(x), h)


class AttnBlock2d(nn.Module):
    """Single-head self-attention over all positions of a ``(B, C, H, W)`` map, with a residual."""

    def __init__(self, channels: int, norm_groups: int | None = None) -> None:
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # (B, HW, C) each
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample2d(nn.Module):
    """Halve H and W with a stride-2 3x3 conv, padded (0, 1) on the right/bottom as in VQGAN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2d(nn.Module):
    """Double H and W: nearest-neighbour upsampling then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def onednn_inference(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether convs on tensors of ``device`` and ``dtype`` may take the oneDNN inference path:
    :func:`eager_inference`, float32 on a CPU with oneDNN."""
    return (eager_inference() and device.type == "cpu" and dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def inference_layout(x: Tensor) -> Tensor:
    """A ``(B, C, H, W)`` map in channels-last memory for CPU inference (oneDNN's own layout: its convs,
    GroupNorm and upsampling skip a reorder, about 1.3x faster here); unchanged otherwise. Same values,
    other float32 rounding in the convs."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and onednn_inference(x.device, x.dtype) else x
