"""HiFi-GAN-style waveform encoder and decoder, as in NVIDIA NeMo's audio codecs.

The decoder is the HiFi-GAN V1 generator (Kong et al. 2020): an input conv, then per stage an
activation, a transposed conv that upsamples by ``r`` (kernel ``2r``) and halves the width, and a
multi-receptive-field layer; the encoder mirrors it with strided convs that double the width.

A multi-receptive-field layer (:class:`MultiKernelLayer`) runs one branch per kernel size, each a
chain of residual units (one per dilation), and averages the branches. Convs are centred with
reflect padding by default, as NeMo's codecs train them, so these networks are not causal.
Weights are plain conv weights: a converter folds NeMo's weight norm into them once
(``w = g v / ||v||``), the same product NeMo computes at every forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .audio import Snake1d

ACTIVATIONS = ("elu", "lrelu", "snake", "half_snake")


class HalfSnake1d(nn.Module):
    """Snake on the first ``channels // 2`` channels, leaky ReLU (slope 0.01) on the rest."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.snake = Snake1d(self.split)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.snake(x[:, : self.split]), nn.functional.leaky_relu(x[:, self.split :])], dim=1)


def activation(name: str, channels: int) -> nn.Module:
    """One of :data:`ACTIVATIONS` for ``channels`` channels (Snake variants learn ``alpha`` per channel)."""
    if name == "elu":
        return nn.ELU()
    if name == "lrelu":
        return nn.LeakyReLU()
    if name == "snake":
        return Snake1d(channels)
    if name == "half_snake":
        return HalfSnake1d(channels)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def centred_conv(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 padding: int | None = None, pad_mode: str = "reflect") -> nn.Conv1d:
    """A 1D conv padded on both sides; ``padding`` defaults to ``dilation * (kernel - 1) // 2``."""
    if not padding:  # 0 means "centred" too, as in NeMo's Conv1dNorm
        padding = (kernel * dilation - dilation) // 2
    return nn.Conv1d(cin, cout, kernel, stride, padding=padding, dilation=dilation, padding_mode=pad_mode)


def _frames_for(pad: int, samples_per_frame: int, pad_mode: str) -> int:
    """Fewest frames for which a conv padded by ``pad`` at ``samples_per_frame`` samples per frame runs:
    reflect (and circular) padding needs an input longer than the padding."""
    return pad // samples_per_frame + 1 if pad_mode in ("reflect", "circular") else 1


def _multi_kernel_pad(kernels: Sequence[int], dilations: Sequence[int]) -> int:
    """Largest padding inside a :class:`MultiKernelLayer`."""
    return max(max((k * d - d) // 2, (k - 1) // 2) for k in kernels for d in dilations)


class ResidualUnit(nn.Module):
    """``x + conv2(act2(conv1(act1(x))))``: ``conv1`` dilated, ``conv2`` not; widths ``channels -> filters -> channels``."""

    def __init__(self, channels: int, filters: int, kernel: int, dilation: int, act: str, pad_mode: str) -> None:
        super().__init__()
        self.act1 = activation(act, channels)
        self.conv1 = centred_conv(channels, filters, kernel, dilation=dilation, pad_mode=pad_mode)
        self.act2 = activation(act, filters)
        self.conv2 = centred_conv(filters, channels, kernel, pad_mode=pad_mode)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class MultiKernelLayer(nn.Module):
    """HiFi-GAN's multi-receptive-field layer: per kernel size a chain of :class:`ResidualUnit` (one per
    dilation); the output is the branches' mean. ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, kernels: Sequence[int], dilations: Sequence[int], act: str, pad_mode: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(ResidualUnit(channels, channels, k, d, act, pad_mode) for d in dilations)) for k in kernels
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out / len(self.branches)


class EncoderStage(nn.Module):
    """Multi-kernel layer, activation, then a strided conv (kernel ``2r``) that doubles the width: ``T -> T / r``."""

    def __init__(self, channels: int, rate: int, kernels: Sequence[int], dilations: Sequence[int], act: str,
                 pad_mode: str) -> None:
        super().__init__()
        self.res = MultiKernelLayer(channels, kernels, dilations, act, pad_mode)
        self.act = activation(act, channels)
        self.down = centred_conv(channels, 2 * channels, 2 * rate, stride=rate, padding=(rate + 1) // 2,
                                 pad_mode=pad_mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.res(x)))


class DecoderStage(nn.Module):
    """Activation, a transposed conv (kernel ``2r``) that halves the width, then a multi-kernel layer: ``T -> T r``."""

    def __init__(self, channels: int, rate: int, kernels: Sequence[int], dilations: Sequence[int], act: str,
                 pad_mode: str, grouped_up: bool) -> None:
        super().__init__()
        out = channels // 2
        self.act = activation(act, channels)
        self.up = nn.ConvTranspose1d(channels, out, 2 * rate, rate, padding=(rate + 1) // 2,
                                     output_padding=rate % 2, groups=out if grouped_up else 1)
        self.res = MultiKernelLayer(out, kernels, dilations, act, pad_mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.res(self.up(self.act(x)))


class HiFiGANEncoder(nn.Module):
    """Waveform ``(B, 1, T)`` -> latents ``(B, latent_channels, T / hop)``, ``hop = prod(rates)``.

    ``T`` must be a multiple of ``hop`` (the tokenizer pads) and, with reflect padding, at least
    ``min_frames`` hops long. Widths: ``base_channels``, doubling at every stage.
    """

    def __init__(self, latent_channels: int, rates: Sequence[int] = (2, 2, 4, 8, 8), base_channels: int = 48,
                 in_kernel: int = 7, out_kernel: int = 7, kernels: Sequence[int] = (3, 7, 11),
                 dilations: Sequence[int] = (1,), act: str = "lrelu", pad_mode: str = "reflect") -> None:
        super().__init__()
        self.hop_length = math.prod(rates)
        self.stem = centred_conv(1, base_channels, in_kernel, pad_mode=pad_mode)
        width = base_channels
        stages = []
        for rate in rates:
            stages.append(EncoderStage(width, rate, kernels, dilations, act, pad_mode))
            width *= 2
        self.stages = nn.Sequential(*stages)
        self.out_act = activation(act, width)
        self.out_conv = centred_conv(width, latent_channels, out_kernel, pad_mode=pad_mode)
        need, per_frame = [_frames_for((in_kernel - 1) // 2, self.hop_length, pad_mode)], self.hop_length
        for rate in rates:
            need += [_frames_for(_multi_kernel_pad(kernels, dilations), per_frame, pad_mode),
                     _frames_for((rate + 1) // 2, per_frame, pad_mode)]
            per_frame //= rate
        self.min_frames = max(need + [_frames_for((out_kernel - 1) // 2, 1, pad_mode)])

    def forward(self, x: Tensor) -> Tensor:
        return self.out_conv(self.out_act(self.stages(self.stem(x))))


class HiFiGANDecoder(nn.Module):
    """Latents ``(B, latent_channels, N)`` -> waveform ``(B, 1, N hop)`` in ``[-1, 1]`` (``tanh`` or clamp);
    with reflect padding ``N >= min_frames``."""

    def __init__(self, latent_channels: int, rates: Sequence[int] = (8, 8, 4, 2, 2), base_channels: int = 1024,
                 in_kernel: int = 7, out_kernel: int = 3, kernels: Sequence[int] = (3, 7, 11),
                 dilations: Sequence[int] = (1, 3, 5), act: str = "lrelu", output: str = "tanh",
                 pad_mode: str = "reflect", grouped_up: bool = False) -> None:
        super().__init__()
        if output not in ("tanh", "clamp"):
            raise ValueError(f"output must be 'tanh' or 'clamp', got {output!r}")
        self.hop_length = math.prod(rates)
        self.output = output
        self.stem = centred_conv(latent_channels, base_channels, in_kernel, pad_mode=pad_mode)
        width = base_channels
        stages = []
        for rate in rates:
            stages.append(DecoderStage(width, rate, kernels, dilations, act, pad_mode, grouped_up))
            width //= 2
        self.stages = nn.Sequential(*stages)
        self.out_act = activation(act, width)
        self.out_conv = centred_conv(width, 1, out_kernel, pad_mode=pad_mode)
        need, per_frame = [_frames_for((in_kernel - 1) // 2, 1, pad_mode)], 1
        for rate in rates:
            per_frame *= rate
            need.append(_frames_for(_multi_kernel_pad(kernels, dilations), per_frame, pad_mode))
        self.min_frames = max(need + [_frames_for((out_kernel - 1) // 2, per_frame, pad_mode)])

    def forward(self, z: Tensor) -> Tensor:
        y = self.out_conv(self.out_act(self.stages(self.stem(z))))
        return torch.tanh(y) if self.output == "tanh" else y.clamp(-1.0, 1.0)
