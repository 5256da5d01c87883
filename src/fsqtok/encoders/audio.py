"""SEANet/DAC-style 1D conv waveform encoder and decoder, causal by default.

Each encoder block is three dilated residual units (dilations 1, 3, 9) then a strided conv
that doubles the width; the decoder mirrors it with transposed convs. Activations are Snake
(DAC). There is no normalization over time, so with ``causal=True`` an output depends only on
past input and audio can be encoded in chunks (see :meth:`AudioEncoder.context`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .blocks import eager_inference, residual_add
from .causal import PaddedConv1d, PaddedConvTranspose1d, context_1d


class Snake1d(nn.Module):
    """``x + sin(alpha * x) ** 2 / alpha`` with a learned ``alpha`` per channel (DAC)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        if eager_inference():
            return snake_inplace(x, self.alpha)
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def snake_inplace(x: Tensor, alpha: Tensor) -> Tensor:
    """:class:`Snake1d` for inference, ``(B, C, T)`` -> ``(B, C, T)``: the same operations in the same
    order (so the same bits), written into one new buffer instead of five (no autograd)."""
    y = torch.mul(alpha, x)
    y.sin_()
    y.mul_(y)  # pow(2) computes x * x
    y.mul_((alpha + 1e-9).reciprocal())
    return y.add_(x)


class ResidualUnit1d(nn.Module):
    """Snake, dilated kernel-7 conv, Snake, 1x1 conv, plus the input."""

    def __init__(self, channels: int, dilation: int, causal: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(channels),
            PaddedConv1d(channels, channels, 7, dilation=dilation, causal=causal),
            Snake1d(channels),
            PaddedConv1d(channels, channels, 1, causal=causal),
        )

    def forward(self, x: Tensor) -> Tensor:
        return residual_add(x, self.block(x))


class AudioEncoder(nn.Module):
    """``(B, in_channels, T)`` -> ``(B, latent_channels, T / hop)`` with ``hop = prod(strides)``.

    ``T`` must be a multiple of ``hop`` (the tokenizer pads).
    """

    def __init__(
        self,
        in_channels: int = 1,
        latent_channels: int = 4,
        base_channels: int = 32,  # width after the input conv; doubles at every stride (DAC: 64)
        strides: Sequence[int] = (2, 4, 5, 8),  # downsampling per block; 320 -> 50 tokens/s at 16 kHz
        dilations: Sequence[int] = (1, 3, 9),  # of the residual units in each block
        causal: bool = True,  # left padding only, so chunked encoding matches whole-input encoding
    ) -> None:
        super().__init__()
        width = base_channels
        layers: list[nn.Module] = [PaddedConv1d(in_channels, width, 7, causal=causal)]
        for stride in strides:
            layers += [ResidualUnit1d(width, d, causal) for d in dilations]
            layers += [Snake1d(width), PaddedConv1d(width, 2 * width, 2 * stride, stride=stride, causal=causal)]
            width *= 2
        layers += [Snake1d(width), PaddedConv1d(width, latent_channels, 3, causal=causal)]
        self.layers = nn.Sequential(*layers)
        self.hop_length = math.prod(strides)

    def context(self) -> tuple[int, int]:
        """``(lookback, lookahead)`` in samples: how far before/after its own hop an output token looks."""
        lookback, lookahead, _ = context_1d(self.layers)
        return lookback, lookahead

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class AudioDecoder(nn.Module):
    """``(B, latent_channels, N)`` -> ``(B, out_channels, N * hop)`` in [-1, 1]; mirrors :class:`AudioEncoder`."""

    def __init__(
        self,
        out_channels: int = 1,
        latent_channels: int = 4,
        base_channels: int = 32,
        strides: Sequence[int] = (2, 4, 5, 8),
        dilations: Sequence[int] = (1, 3, 9),
        causal: bool = True,
    ) -> None:
        super().__init__()
        width = base_channels * 2 ** len(strides)
        layers: list[nn.Module] = [PaddedConv1d(latent_channels, width, 7, causal=causal)]
        for stride in reversed(strides):
            layers += [
                Snake1d(width),
                PaddedConvTranspose1d(width, width // 2, 2 * stride, stride=stride, causal=causal),
            ]
            width //= 2
            layers += [ResidualUnit1d(width, d, causal) for d in dilations]
        layers += [Snake1d(width), PaddedConv1d(width, out_channels, 7, causal=causal), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)
