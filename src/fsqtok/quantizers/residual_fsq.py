"""Residual FSQ: ``S`` FSQ stages, each quantizing what the previous stages left over.

Stage 0 is plain FSQ: ``tanh``-bound and round. The stages after it refine what rounding
left over, ``residual = bound(z) / (L // 2) - codes``: stage ``i`` works at scale ``L^-i``
per channel, snapping ``residual / L^-i`` to the same grid (clamped to it, no ``tanh``,
since the residual is already small) and adding ``codes_i * L^-i``. The straight-through
gradient is that of stage 0, so a one-stage ``ResidualFSQ`` is exactly an :class:`FSQ`. Decoding from the first ``S' <= S``
stages gives a coarser reconstruction at a lower bitrate, so one model serves several
bitrates, chosen at decode time.

``quantize_dropout`` trains for that: during training each forward keeps only the first
``n`` stages, ``n`` drawn uniformly from ``[quantize_dropout_min_stages, S]``. The draw
comes from a counter-based generator (``seed``, forward count), not from a collective, so
every rank of a distributed run draws the same ``n`` without communicating, and nothing
can hang when ranks run forwards under ``no_grad`` or on uneven data. Dropped stages get
the index of the zero code, so indices stay in range and ``decode_indices(indices)``
still equals ``z_q``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .base import ChannelProjection, ResidualQuantizerOutput, check_channels, fp32_region
from .fsq import FSQ, _axis_view


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
    """

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
    ) -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"ResidualFSQ: num_stages must be >= 1, got {num_stages}")
        if not 1 <= quantize_dropout_min_stages <= num_stages:
            raise ValueError(
                f"ResidualFSQ: quantize_dropout_min_stages must be in [1, num_stages={num_stages}], "
                f"got {quantize_dropout_min_stages}"
            )
        # one FSQ grid, without projections, shared by every stage
        self.fsq = FSQ(levels, eps=eps, symmetric=symmetric, channel_last=channel_last)
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
        self.project_in = ChannelProjection(self.in_channels, self.dim, self.channel_last)
        self.project_out = ChannelProjection(self.dim, self.in_channels, self.channel_last)
        levels_t = torch.tensor(self.levels, dtype=torch.float64)
        # (S, d) per-stage scales L^-i, kept in float64 on the host; see _scales()
        self._host_scales = torch.stack([levels_t ** -i for i in range(self.num_stages)]).float()
        self._scales_cache: dict[torch.device, Tensor] = {}
        # number of training forwards so far: drives the dropout draws, saved with the weights
        self.register_buffer("dropout_step", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, num_stages={self.num_stages}, in_channels={self.in_channels}, "
                f"quantize_dropout={self.quantize_dropout}")

    def _scales(self, device: torch.device) -> Tensor:
        s = self._scales_cache.get(device)
        if s is None:
            s = self._scales_cache[device] = self._host_scales.to(device)
        return s

    @property
    def _channel_axis(self) -> int:
        return -1 if self.channel_last else 1

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
            ``indices (B, S, *spatial)`` and ``num_active``.
        """
        check_channels(z, self.in_channels, self.channel_last, "ResidualFSQ")
        axis = self._channel_axis
        n_active = self.num_active_stages()
        scales = self._scales(z.device)
        with fp32_region(z.device.type):
            h = self.project_in(z.float())
            # stage 0 is plain FSQ and carries the straight-through gradient
            codes, q = self.fsq._round(h, axis)
            stage_indices = [self.fsq._pack(q, axis)]
            with torch.no_grad():
                residual = self.fsq._normalized_bound(h, axis) - codes
                refinement = torch.zeros_like(residual)
                for i in range(1, n_active):
                    scale = _axis_view(scales[i], residual.ndim, axis)
                    codes_i, q = self.fsq._snap(residual / scale, axis)
                    residual -= codes_i * scale
                    refinement += codes_i * scale
                    stage_indices.append(self.fsq._pack(q, axis))
            fill = stage_indices[0].new_full(stage_indices[0].shape, self.zero_index)
            stage_indices += [fill] * (self.num_stages - n_active)
            indices = torch.stack(stage_indices, dim=1)
            z_q = self.project_out(codes + refinement if n_active > 1 else codes).to(z.dtype)
        return ResidualQuantizerOutput(z_q=z_q, indices=indices, loss=z.new_zeros((), dtype=torch.float32),
                                       codebook_size=self.codebook_size, num_active=n_active)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Decode from a prefix of stages.

        Args:
            indices: int64 ``(B, S', *spatial)`` with ``1 <= S' <= num_stages``.
        Returns:
            float32 ``z_q (B, in_channels, *spatial)`` (or channel-last).
        """
        if indices.ndim < 2 or not 1 <= indices.shape[1] <= self.num_stages:
            raise ValueError(
                f"ResidualFSQ: expected indices (B, S', *spatial) with 1 <= S' <= {self.num_stages}, "
                f"got shape {tuple(indices.shape)}"
            )
        axis = self._channel_axis
        scales = self._scales(indices.device)
        with fp32_region(indices.device.type):
            total = None
            for i in range(indices.shape[1]):
                codes = self.fsq._unpack_codes(indices[:, i], axis)
                q = codes * _axis_view(scales[i], codes.ndim, axis)
                total = q if total is None else total + q
            return self.project_out(total)
