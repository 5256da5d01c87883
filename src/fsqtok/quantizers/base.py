"""Pieces every quantizer shares: the output record, projections and the fp32 guard."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from .stats import code_counts, perplexity_from_counts, usage_from_counts


class NonFiniteLatentError(ValueError):
    """Raised when indices are read that were computed from NaN or infinite latents.

    Such latents have no code: rounding NaN gives an arbitrary integer, and argmin over NaN
    distances an arbitrary code, so the indices would be silent garbage. Tokenizers and the
    CLI catch this error to name the input that produced the latents.
    """


class QuantizerOutput:
    """What a quantizer's ``forward`` returns.

    Attributes:
        z_q: quantized features, same shape and dtype as the input ``z``.
        indices: int64 codes, ``(B, *spatial)``; ``(B, S, *spatial)`` for residual quantizers.
            Reading it raises :class:`NonFiniteLatentError` when the latents held NaN or inf.
        loss: scalar auxiliary loss (commitment/codebook for VQ; exactly 0 for FSQ).
        codebook_size: codes per stage, for the usage figures below.
        finite: 0-dim bool tensor on the latents' device, whether every latent was finite;
            ``None`` when not checked.

    The finiteness check is lazy on purpose: ``forward`` only computes ``finite`` on the device
    (one fused reduction, no host sync, so a training step stays asynchronous on a GPU), and the
    host reads it when ``indices`` are first read, i.e. where indices leave the module.
    """

    def __init__(self, z_q: Tensor, indices: Tensor, loss: Tensor, codebook_size: int,
                 finite: Tensor | None = None, source: str = "quantizer") -> None:
        self.z_q = z_q
        self._indices = indices
        self.loss = loss
        self.codebook_size = codebook_size
        self.finite = finite
        self._source = source

    @property
    def unchecked_indices(self) -> Tensor:
        """The indices without the finiteness check (``finite`` says whether they mean anything): for
        graphs that cannot raise, such as an ONNX export, which masks them with ``finite`` instead."""
        return self._indices

    @property
    def indices(self) -> Tensor:
        if self.finite is not None:
            if not bool(self.finite):
                raise NonFiniteLatentError(
                    f"{self._source}: the latents hold NaN or infinite values, so they have no valid indices "
                    "(check the input and the encoder's weights)"
                )
            self.finite = None  # checked once
        return self._indices

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(z_q={tuple(self.z_q.shape)}, indices={tuple(self._indices.shape)}, "
                f"loss={self.loss}, codebook_size={self.codebook_size})")

    def _counts(self) -> Tensor:
        """``(1, K)`` code counts of this batch."""
        return code_counts(self.indices, self.codebook_size)[None]

    def usage(self) -> float:
        """Fraction of the codebook used in this batch (averaged over stages); computed on demand."""
        return usage_from_counts(self._counts())

    def perplexity(self) -> float:
        """Perplexity of this batch's codes (averaged over stages); computed on demand."""
        return perplexity_from_counts(self._counts())


class ResidualQuantizerOutput(QuantizerOutput):
    """:class:`QuantizerOutput` whose ``indices`` carry a stage axis at 1; ``num_active`` stages were used."""

    def __init__(self, z_q: Tensor, indices: Tensor, loss: Tensor, codebook_size: int,
                 finite: Tensor | None = None, source: str = "quantizer", num_active: int = 0) -> None:
        super().__init__(z_q, indices, loss, codebook_size, finite, source)
        self.num_active = num_active

    def _counts(self) -> Tensor:
        """``(S_active, K)`` code counts, one row per active stage."""
        indices = self.indices
        return torch.stack([code_counts(indices[:, s], self.codebook_size) for s in range(self.num_active)])


def all_finite(x: Tensor) -> Tensor:
    """0-dim bool tensor on ``x``'s device: no NaN or inf in ``x``. One pass (``aminmax``
    propagates NaN), no temporaries of ``x``'s size and no host sync."""
    if x.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=x.device)
    if torch.compiler.is_exporting():  # ONNX has no conversion of aminmax over all axes
        return torch.isfinite(x).all()
    lo, hi = torch.aminmax(x)
    return torch.isfinite(lo) & torch.isfinite(hi)


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
        """``(B, in_features, *S)`` -> float32 ``(B, out_features, *S)``."""
        if self.linear is None:
            return z
        weight, bias = self.linear.weight.float(), self.linear.bias.float()
        # one batched matmul on the (B, C, N) view, bias added inside it: no permutes, no copies of z
        flat = z.reshape(z.shape[0], z.shape[1], -1)
        out = torch.baddbmm(bias.view(1, -1, 1), weight.expand(z.shape[0], -1, -1), flat)
        return out.view(z.shape[0], -1, *z.shape[2:])


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
