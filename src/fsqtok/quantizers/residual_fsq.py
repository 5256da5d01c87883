"""Residual FSQ: ``S`` FSQ stages, each quantizing what the previous stages left over.

Stage 0 is plain FSQ: ``tanh``-bound and round. The stages after it refine what rounding
left over, ``residual = bound(z) / half_width - codes``: stage ``i`` works at scale ``r^-i``
per channel, snapping ``residual / r^-i`` to the same grid (clamped to it, no ``tanh``,
since the residual is already small) and adding ``codes_i * r^-i``. The straight-through
gradient is that of stage 0, so a one-stage ``ResidualFSQ`` is exactly an :class:`FSQ`. Decoding from the first ``S' <= S``
stages gives a coarser reconstruction at a lower bitrate, so one model serves several
bitrates, chosen at decode time.

The stage ratio ``r`` (``stage_scale="grid"``, the default) is the largest factor at which
the grid still covers what the previous stage left over. Rounding leaves at most half a
step, ``[-1/2, 1/2]``; scaled by ``r`` that is ``[-r/2, r/2]``, which the grid's values
``q`` round onto with at most half a step of error only if ``-r/2 >= q_min - 1/2`` and
``r/2 <= q_max + 1/2``. For odd ``L`` (and the symmetric grid) ``q`` spans ``+-(L-1)/2``, so
``r = L``; for even ``L`` on the paper's grid ``q`` spans ``[-L/2, L/2 - 1]``, so ``r = L - 1``.
Every stage then shrinks the worst-case error by ``r``: ``|bound(z)/half_width - decoded| <=
r^(1-s) / (2 half_width)`` after ``s`` stages. ``stage_scale="levels"`` (``r = L``) is the
scale that residual tokenizers saved before it was fixed used, kept so that their tokens decode as before: with even
``L``, stage 1 sees ``[-L/2, L/2]``, the clamp saturates at ``L/2 - 1`` and the error stops
shrinking (``ResidualFSQ([8], 4)``: 0.125, 0.031, 0.0195, 0.018). For odd levels and the
symmetric grid both scales are the same.

``quantize_dropout`` trains for that: during training each forward keeps only the first
``n`` stages, ``n`` drawn uniformly from ``[quantize_dropout_min_stages, S]``. The draw
comes from a counter-based generator (``seed``, forward count), not from a collective, so
every rank of a distributed run draws the same ``n`` without communicating, and nothing
can hang when ranks run forwards under ``no_grad`` or on uneven data. Dropped stages get
the index of the zero code, so indices stay in range and ``decode_indices(indices)``
still equals ``z_q``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from .base import (ChannelProjection, ResidualQuantizerOutput, all_finite, channels_first, check_channels, fp32_region,
                   restore_layout)
from .fsq import FSQ, _axis_view


class _StageConsts(NamedTuple):
    """Per-stage float32 constants, ``(S, d)``: stage ``i`` snaps ``residual * gain_in[i]`` to the
    grid and contributes ``q * gain_out[i] (+ bias_out[i])``, i.e. ``codes * r^-i``."""

    gain_in: Tensor
    gain_out: Tensor
    bias_out: Tensor | None


class ResidualFSQ(nn.Module):
    """Residual Finite Scalar Quantizer.

    Args:
        levels: FSQ levels shared by all stages, e.g. ``[8, 5, 5, 5]``.
        num_stages: number of residual stages ``S``.
        in_channels: feature channels; projected to ``len(levels)`` and back when different.
        eps, symmetric: as in :class:`FSQ`.
        channel_last: :meth:`forward` takes ``(B, *spatial, C)``.
        quantize_dropout: train with a random number of active stages (variable bitrate).
        quantize_dropout_min_stages: fewest stages kept by ``quantize_dropout`` (>= 1).
        seed: seeds the dropout draws; all ranks must use the same seed.
        stage_scale: ``"grid"`` (stage ``i`` at scale ``r^-i``, ``r = L - 1`` for even levels on the
            paper's grid, else ``L``: converges for every level) or ``"levels"`` (``L^-i``, the scale
            of older checkpoints, which stops converging for even levels); see the module docstring.
    """

    STAGE_SCALES = ("grid", "levels")

    def __init__(
        self,
        levels: Sequence[int],
        num_stages: int,
        in_channels: int | None = None,
        *,
        eps: float = 1e-3,
        symmetric: bool = False,
        channel_last: bool = False,
        quantize_dropout: bool = False,
        quantize_dropout_min_stages: int = 1,
        seed: int = 0,
        stage_scale: str = "grid",
    ) -> None:
        super().__init__()
        if stage_scale not in self.STAGE_SCALES:
            raise ValueError(f"ResidualFSQ: stage_scale must be one of {self.STAGE_SCALES}, got {stage_scale!r}")
        if num_stages < 1:
            raise ValueError(f"ResidualFSQ: num_stages must be >= 1, got {num_stages}")
        if not 1 <= quantize_dropout_min_stages <= num_stages:
            raise ValueError(
                f"ResidualFSQ: quantize_dropout_min_stages must be in [1, num_stages={num_stages}], "
                f"got {quantize_dropout_min_stages}"
            )
        # one FSQ grid, without projections, shared by every stage
        self.fsq = FSQ(levels, eps=eps, symmetric=symmetric)
        if quantize_dropout and symmetric and any(L % 2 == 0 for L in self.fsq.levels):
            raise ValueError(
                "ResidualFSQ: quantize_dropout needs a zero code for dropped stages; the symmetric grid "
                "has none for even levels: use odd levels or symmetric=False"
            )
        self.levels = self.fsq.levels
        self.dim = self.fsq.dim
        self.num_stages = int(num_stages)
        self.in_channels = self.dim if in_channels is None else int(in_channels)
        self.channel_last = bool(channel_last)
        self.codebook_size = self.fsq.codebook_size
        self.quantize_dropout = bool(quantize_dropout)
        self.quantize_dropout_min_stages = int(quantize_dropout_min_stages)
        self.seed = int(seed)
        self.stage_scale = stage_scale
        self.project_in = ChannelProjection(self.in_channels, self.dim)
        self.project_out = ChannelProjection(self.dim, self.in_channels)
        self._stage_cache: dict[torch.device, _StageConsts] = {}
        # number of training forwards so far: drives the dropout draws, saved with the weights
        self.register_buffer("dropout_step", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, num_stages={self.num_stages}, in_channels={self.in_channels}, "
                f"quantize_dropout={self.quantize_dropout}, stage_scale={self.stage_scale!r}")

    def _stages(self, device: torch.device) -> _StageConsts:
        """Per-stage float32 ``(S, d)`` constants on ``device`` (computed in float64 once)."""
        c = self._stage_cache.get(device)
        if c is None:
            scale = torch.stack([self.stage_ratio ** -i for i in range(self.num_stages)])  # (S, d): r^-i
            host = self.fsq._host_consts
            half_width, inv = host.half_width.double(), host.inv_half_width.double()
            c = _StageConsts(
                gain_in=(half_width / scale).float().to(device),
                # stage 0's gain is exactly the FSQ grid's, so stage-0 decoding matches FSQ bit for bit
                gain_out=(inv * scale).float().to(device),
                bias_out=(-scale).float().to(device) if self.fsq.symmetric else None,
            )
            self._stage_cache[device] = c
        return c

    @property
    def stage_ratio(self) -> Tensor:
        """float64 ``(d,)``: how much finer each stage is than the one before (``r`` above)."""
        levels = torch.tensor(self.levels, dtype=torch.float64)
        if self.stage_scale == "levels" or self.fsq.symmetric:
            return levels
        return levels - (levels % 2 == 0).double()

    @property
    def zero_index(self) -> int:
        """Index of the all-zero code, given to dropped stages."""
        # the zero code is digit L // 2 on every channel (both grids; symmetric only for odd L)
        return sum((L // 2) * b for L, b in zip(self.levels, self.fsq._host_consts.basis.tolist()))

    def num_active_stages(self) -> int:
        """Stages used by the next forward: all of them, unless training with quantize dropout."""
        if not (self.training and self.quantize_dropout):
            return self.num_stages
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.dropout_step))
        self.dropout_step += 1
        return int(torch.randint(self.quantize_dropout_min_stages, self.num_stages + 1, (1,), generator=g))

    def forward(self, z: Tensor) -> ResidualQuantizerOutput:
        """Quantize ``z (B, in_channels, *spatial)`` (or channel-last) in ``S`` residual stages.

        Returns:
            :class:`ResidualQuantizerOutput` with ``z_q`` of ``z``'s shape and dtype, int64
            ``indices (B, S, *spatial)`` and ``num_active``. Reading ``indices`` raises
            :class:`NonFiniteLatentError` when the projected latents held NaN or inf.
        """
        check_channels(z, self.in_channels, self.channel_last, "ResidualFSQ")
        n_active = self.num_active_stages()
        st = self._stages(z.device)
        view = lambda t: None if t is None else _axis_view(t, z.ndim, 1)  # noqa: E731
        with fp32_region(z.device.type):
            h = self.project_in(channels_first(z.float(), self.channel_last))
            # stage 0 is plain FSQ and carries the straight-through gradient
            codes, q, error = self.fsq._round(h, 1, want_error=n_active > 1)
            indices = torch.empty(h.shape[0], self.num_stages, *h.shape[2:], dtype=torch.int64, device=h.device)
            self.fsq._pack(q, 1, out=indices[:, 0])
            if n_active > 1:
                with torch.no_grad():
                    # what stage 0 left over, normalized: bound(h) / half_width - codes
                    residual = error.mul_(view(self.fsq._consts(h.device).inv_half_width))
                    refinement = None
                    for i in range(1, n_active):
                        bias = st.bias_out[i] if st.bias_out is not None else None
                        codes_i, q = self.fsq._snap(residual, view(st.gain_in[i]), view(st.gain_out[i]), view(bias))
                        residual.sub_(codes_i)
                        refinement = codes_i if refinement is None else refinement.add_(codes_i)
                        self.fsq._pack(q, 1, out=indices[:, i])
                codes = codes + refinement
            indices[:, n_active:] = self.zero_index
            z_q = restore_layout(self.project_out(codes), self.channel_last).to(z.dtype)
        return ResidualQuantizerOutput(z_q=z_q, indices=indices, loss=z.new_zeros((), dtype=torch.float32),
                                       codebook_size=self.codebook_size, finite=all_finite(h), source="ResidualFSQ",
                                       num_active=n_active)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decode from a prefix of stages.

        Args:
            indices: int64 ``(B, S', *spatial)`` with ``1 <= S' <= num_stages``.
        Returns:
            float32 ``z_q (B, in_channels, *spatial)`` (or channel-last).
        """
        with fp32_region(indices.device.type):
            return restore_layout(self.project_out(self.decode_codes(indices)), self.channel_last)

    def decode_codes(self, indices: Tensor) -> Tensor:
        """The stages' summed normalized codes, before the output projection.

        Args:
            indices: int64 ``(B, S', *spatial)`` with ``1 <= S' <= num_stages``.
        Returns:
            float32 ``(B, d, *spatial)``, channel-first, approximating ``bound(h) / half_width`` of
            the projected latents ``h`` within ``r^(1 - S') / (2 half_width)`` per channel.
        """
        if indices.ndim < 2 or not 1 <= indices.shape[1] <= self.num_stages:
            raise ValueError(
                f"ResidualFSQ: expected indices (B, S', *spatial) with 1 <= S' <= {self.num_stages}, "
                f"got shape {tuple(indices.shape)}"
            )
        st = self._stages(indices.device)
        view = lambda t: None if t is None else _axis_view(t, indices.ndim, 1)  # noqa: E731
        with fp32_region(indices.device.type):
            stages = [self.fsq._unpack_codes(indices[:, i], 1, gain=view(st.gain_out[i]),
                                             bias=view(st.bias_out[i]) if st.bias_out is not None else None)
                      for i in range(indices.shape[1])]
            # summed in the forward pass's order, so decoding reproduces z_q bit for bit
            total = stages[0]
            if len(stages) > 1:
                refinement = stages[1]
                for codes in stages[2:]:
                    refinement = refinement + codes
                total = total + refinement
            return total
