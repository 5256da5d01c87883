"""Lossless patching in front of an encoder and its inverse behind a decoder (Cosmos-Tokenizer style).

``"haar"``: ``log2(p)`` levels of the Haar wavelet transform, each on every channel. One level
splits each ``2 x 2`` (image) or ``2 x 2 x 2`` (video) block into ``2**n`` bands, each the block's
sum with the signs of its band divided by ``2**n`` (the low band is the block mean), stacked
band-major: channel ``band * C + c``, the band's first axis outermost (images: width then height;
videos: time, height, width). ``"rearrange"``: the block's pixels become channels
(``c p1 p2 [p3]``, as ``pixel_unshuffle``). Both are exactly invertible.

Videos keep the first frame alone: it is repeated ``p - 1`` extra times before patching, and those
copies are dropped after unpatching, so ``1 + k * p`` frames become ``1 + k`` patch frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

PATCH_METHODS = ("haar", "rearrange")


def haar_split(x: Tensor, axes: Sequence[int]) -> Tensor:
    """One Haar level along ``axes`` (applied in order) of ``(B, C, *S)``, each ``S[axis]`` even.

    Returns ``(B, 2**len(axes) * C, *S / 2)``.
    """
    y = x.unsqueeze(1)  # (B, bands, C, *S): axis a of x is axis a + 1 here
    for axis in axes:
        d = axis + 1
        y = y.unflatten(d, (y.shape[d] // 2, 2))
        even, odd = y.select(d + 1, 0), y.select(d + 1, 1)
        y = torch.stack([(even + odd) * 0.5, (even - odd) * 0.5], dim=2).flatten(1, 2)
    return y.flatten(1, 2)


def haar_merge(x: Tensor, axes: Sequence[int]) -> Tensor:
    """Inverse of :func:`haar_split`: ``(B, 2**len(axes) * C, *S)`` -> ``(B, C, *2S)``."""
    bands = 2 ** len(axes)
    y = x.unflatten(1, (bands, x.shape[1] // bands))
    for axis in reversed(axes):
        d = axis + 1
        y = y.unflatten(1, (y.shape[1] // 2, 2))
        lo, hi = y.select(2, 0), y.select(2, 1)
        y = torch.stack([lo + hi, lo - hi], dim=d + 1).flatten(d, d + 1)
    return y.squeeze(1)


def _levels(patch_size: int) -> int:
    levels = int(math.log2(patch_size)) if patch_size >= 1 else -1
    if levels < 0 or 2**levels != patch_size:
        raise ValueError(f"patch_size must be a power of 2, got {patch_size}")
    return levels


class Patcher(nn.Module):
    """Image ``(B, C, H, W)`` -> ``(B, C * p**2, H / p, W / p)``; video ``(B, C, 1 + k p, H, W)`` ->
    ``(B, C * p**3, 1 + k, H / p, W / p)``. H, W must be multiples of ``p``."""

    def __init__(self, patch_size: int, method: str = "haar", video: bool = False) -> None:
        super().__init__()
        if method not in PATCH_METHODS:
            raise ValueError(f"patch method must be one of {', '.join(PATCH_METHODS)}, got {method!r}")
        self.levels, self.patch_size, self.method, self.video = _levels(patch_size), patch_size, method, video
        self.axes = (2, 3, 4) if video else (3, 2)  # Haar order: time, height, width / width, height

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        if self.video and p > 1:
            x = torch.cat([x[:, :, :1].expand(-1, -1, p - 1, -1, -1), x], dim=2)
        if self.method == "haar":
            for _ in range(self.levels):
                x = haar_split(x, self.axes)
            return x
        if not self.video:
            return nn.functional.pixel_unshuffle(x, p)
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // p, p, h // p, p, w // p, p).permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(b, c * p**3, t // p, h // p, w // p)


class UnPatcher(Patcher):
    """Inverse of :class:`Patcher` (for videos the first frame's copies are dropped)."""

    def forward(self, x: Tensor) -> Tensor:
        p = self.patch_size
        if self.method == "haar":
            for _ in range(self.levels):
                x = haar_merge(x, self.axes)
        elif not self.video:
            return nn.functional.pixel_shuffle(x, p)
        else:
            b, c, t, h, w = x.shape
            x = x.reshape(b, c // p**3, p, p, p, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
            x = x.reshape(b, c // p**3, t * p, h * p, w * p)
        return x[:, :, p - 1:] if self.video else x
