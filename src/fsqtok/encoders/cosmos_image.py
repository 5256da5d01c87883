"""The NVIDIA Cosmos-Tokenizer image networks (discrete "DI" models), from fsqtok's 2D blocks.

Encoder: patching (Haar wavelets, :mod:`fsqtok.encoders.patching`), a VQGAN-style ResNet with
32-group GroupNorm, stride-2 downsampling at the first ``log2(spatial_compression / patch_size)``
levels, attention after each residual block at the resolutions in ``attn_resolutions`` (counted
from ``resolution / patch_size``), a middle attention block, then a 1x1 ``quant_conv`` to the FSQ
channels. The decoder mirrors it (``num_res_blocks + 1`` blocks per level) and ends with the
inverse patching. Module names follow the released checkpoints' layout so the converter's key
map stays small (see :mod:`fsqtok.convert.cosmos`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import AttnBlock2d, Downsample2d, ResBlock2d, Upsample2d, group_norm
from .patching import Patcher, UnPatcher

NORM_GROUPS = 32  # Cosmos's 2D GroupNorm


def resample_steps(compression: int, patch_size: int, levels: int, what: str) -> int:
    """Stride-2 steps the network takes besides patching: ``log2(compression / patch_size)``, at most ``levels``."""
    steps = int(math.log2(compression)) - int(math.log2(patch_size))
    if steps < 0 or steps > levels:
        raise ValueError(f"{what} compression {compression} with patch_size {patch_size} needs {steps} "
                         f"resampling steps; the network has {levels} levels")
    return steps


def mid_block(width: int, attention: nn.Module, res_block) -> nn.Module:
    """``block_1 -> attn_1 -> block_2`` (as a module with those three children)."""
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = res_block(width, width), attention, res_block(width, width)
    return mid


def run_level(level: nn.Module, h: Tensor, resample: str) -> Tensor:
    """A level's residual blocks (each followed by its attention block, if any), then its resampler."""
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn):
            h = level.attn[i](h)
    return getattr(level, resample)(h) if hasattr(level, resample) else h


def encoder_trunk(enc: nn.Module, h: Tensor) -> Tensor:
    """A Cosmos encoder (2D or 3D) after its ``conv_in``: the down levels, the middle, then
    ``norm_out -> SiLU -> conv_out -> quant_conv`` to the pre-FSQ latents."""
    for level in enc.down:
        h = run_level(level, h, "downsample")
    h = enc.mid.block_2(enc.mid.attn_1(enc.mid.block_1(h)))
    return enc.quant_conv(enc.conv_out(F.silu(enc.norm_out(h))))


def decoder_trunk(dec: nn.Module, z: Tensor) -> Tensor:
    """A Cosmos decoder (2D or 3D) up to its unpatcher: ``post_quant_conv -> conv_in``, the middle,
    the up levels, then ``norm_out -> SiLU -> conv_out``."""
    h = dec.conv_in(dec.post_quant_conv(z))
    h = dec.mid.block_2(dec.mid.attn_1(dec.mid.block_1(h)))
    for level in reversed(dec.up):
        h = run_level(level, h, "upsample")
    return dec.conv_out(F.silu(dec.norm_out(h)))


class CosmosImageEncoder(nn.Module):
    """``(B, in_channels, H, W)`` -> ``(B, embedding_dim, H / s, W / s)`` (pre-FSQ latents); ``s = spatial_compression``."""

    def __init__(self, in_channels: int, channels: int, channels_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, embedding_dim: int,
                 spatial_compression: int, patch_size: int, patch_method: str) -> None:
        super().__init__()
        self.patcher = Patcher(patch_size, patch_method)
        downs = resample_steps(spatial_compression, patch_size, len(channels_mult), "spatial")
        block = lambda i, o: ResBlock2d(i, o, NORM_GROUPS)  # noqa: E731
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, channels, 3, padding=1)
        res, width = resolution // patch_size, channels
        self.down = nn.ModuleList()
        for i, mult in enumerate(channels_mult):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                level.block.append(block(width, channels * mult))
                width = channels * mult
                if res in attn_resolutions:
                    level.attn.append(AttnBlock2d(width, NORM_GROUPS))
            if i < downs:
                level.downsample = Downsample2d(width)
                res //= 2
            self.down.append(level)
        self.mid = mid_block(width, AttnBlock2d(width, NORM_GROUPS), block)
        self.norm_out = group_norm(width, NORM_GROUPS)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(z_channels, embedding_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return encoder_trunk(self, self.conv_in(self.patcher(x)))


class CosmosImageDecoder(nn.Module):
    """``(B, embedding_dim, h, w)`` FSQ codes -> ``(B, out_channels, h * s, w * s)``."""

    def __init__(self, out_channels: int, channels: int, channels_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, embedding_dim: int,
                 spatial_compression: int, patch_size: int, patch_method: str) -> None:
        super().__init__()
        n = len(channels_mult)
        ups = resample_steps(spatial_compression, patch_size, n, "spatial")
        block = lambda i, o: ResBlock2d(i, o, NORM_GROUPS)  # noqa: E731
        width = channels * channels_mult[-1]
        res = (resolution // patch_size) // 2 ** (n - 1)
        self.post_quant_conv = nn.Conv2d(embedding_dim, z_channels, 1)
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = mid_block(width, AttnBlock2d(width, NORM_GROUPS), block)
        levels: list[nn.Module] = []
        for i in reversed(range(n)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                level.block.append(block(width, channels * channels_mult[i]))
                width = channels * channels_mult[i]
                if res in attn_resolutions:
                    level.attn.append(AttnBlock2d(width, NORM_GROUPS))
            if i >= n - ups:
                level.upsample = Upsample2d(width)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width, NORM_GROUPS)
        self.conv_out = nn.Conv2d(width, out_channels * patch_size**2, 3, padding=1)
        self.unpatcher = UnPatcher(patch_size, patch_method)

    def forward(self, z: Tensor) -> Tensor:
        return self.unpatcher(decoder_trunk(self, z))
