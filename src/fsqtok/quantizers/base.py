"""Pieces every quantizer shares: the output record, projections and the fp32 guard."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from .stats import code_counts, perplexity_from_counts, usage_from_counts


@dataclass
class QuantizerOutput:
    """What a quantizer's ``forward`` returns.

    Attributes:
        z_q: quantized features, same shape and dtype as the input ``z``.
        indices: int64 codes, ``(B, *spatial)``; ``(B, S, *spatial)`` for residual quantizers.
        loss: scalar auxiliary loss (commitment/codebook for VQ; exactly 0 for FSQ).
        codebook_size: codes per stage, for the usage figures below.
    """

    z_q: Tensor
    indices: Tensor
    loss: Tensor
    codebook_size: int

    def _counts(self) -> Tensor:
        """``(1, K)`` code counts of this batch."""
        return code_counts(self.indices, self.codebook_size)[None]

    def usage(self) -> float:
        """Fraction of the codebook used in this batch (averaged over stages); computed on demand."""
        return usage_from_counts(self._counts())

    def perplexity(self) -> float:
        """Perplexity of this batch's codes (averaged over stages); computed on demand."""
        return perplexity_from_counts(self._counts())


@dataclass
class ResidualQuantizerOutput(QuantizerOutput):
    """:class:`QuantizerOutput` whose ``indices`` carry a stage axis at 1; ``num_active`` stages were used."""

    num_active: int = 0

    def _counts(self) -> Tensor:
        """``(S_active, K)`` code counts, one row per active stage."""
        return torch.stack([code_counts(self.indices[:, s], self.codebook_size) for s in range(self.num_active)])


@contextlib.contextmanager
def fp32_region(device_type: str) -> Iterator[None]:
    """Disable autocast so that everything inside runs in the dtype it is given (float32 here)."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def channels_first(z: Tensor, channel_last: bool) -> Tensor:
    """Contiguous ``(B, C, *S)`` features, moving the channel axis of ``(B, *S, C)`` input.

    Quantizers compute channel-first: per-channel constants then broadcast along outer
    axes, which CPU kernels vectorize; broadcasting along a short innermost axis of 4-8
    channels is several times slower than the one copy this costs.
    """
    return z.movedim(-1, 1).contiguous() if channel_last else z


def restore_layout(z: Tensor, channel_last: bool) -> Tensor:
    """Inverse of :func:`channels_first`: ``(B, C, *S)`` back to the caller's layout."""
    return z.movedim(1, -1).contiguous() if channel_last else z


class ChannelProjection(nn.Module):
    """A linear map on the channel axis of ``(B, C, *S)`` features (a 1x1 convolution).

    It is the identity when ``in_features == out_features``, so a quantizer used without
    projections has no extra parameters. Weights are used in float32 whatever the module's dtype.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features) if in_features != out_features else None

    def forward(self, z: Tensor) -> Tensor:
        if self.linear is None:
            return z
        weight, bias = self.linear.weight.float(), self.linear.bias.float()
        out = torch.einsum("oc,bc...->bo...", weight, z)
        return out + bias.view(-1, *([1] * (z.ndim - 2)))


def check_channels(z: Tensor, expected: int, channel_last: bool, name: str) -> None:
    """Raise a one-line error when ``z`` is not ``(B, C, *S)`` / ``(B, *S, C)`` with ``C == expected``."""
    axis = -1 if channel_last else 1
    layout = "(B, *spatial, C)" if channel_last else "(B, C, *spatial)"
    if z.ndim < 2 or z.shape[axis] != expected:
        raise ValueError(
            f"{name}: expected features {layout} with C={expected}, got shape {tuple(z.shape)}"
            + ("" if channel_last else "; pass channel_last=True for channel-last input")
        )
    if not z.is_floating_point():
        raise TypeError(f"{name}: expected floating-point features, got {z.dtype}")
