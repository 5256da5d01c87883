"""Grouped FSQ: the channels split into ``G`` equal groups, each quantized by the same FSQ grid.

``G`` groups of ``d = len(levels)`` channels give ``G`` indices per position, each from a codebook
of ``prod(levels)`` codes (HiFi-Codec's group quantization; NVIDIA NeMo's audio codecs use
``8 x [8, 7, 6, 6]`` or ``8 x [8, 5, 5, 5]``). Group ``g`` holds channels ``[g d, (g + 1) d)``.

Every group shares one grid, so the whole bottleneck is one :class:`FSQ` applied to a view of the
features: ``(B, G d, *S)`` is viewed as ``(B, d, G, *S)`` (channel ``c`` of group ``g`` at
``[c, g]``), which FSQ's conv-feature API quantizes with the group axis as an extra spatial axis.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .base import QuantizerOutput
from .fsq import FSQ


class GroupedFSQ(nn.Module):
    """``num_groups`` FSQ groups over the channel axis of conv features.

    Args:
        levels: FSQ levels of each group, e.g. ``[8, 7, 6, 6]``.
        num_groups: number of groups ``G``; features have ``G * len(levels)`` channels.
        eps, variant: as in :class:`FSQ` (``variant="printed"`` for NeMo's codecs).

    ``forward(z (B, G d, *S))`` returns ``z_q`` of ``z``'s shape and int64 ``indices (B, G, *S)``;
    :meth:`decode_indices` inverts the indices.
    """

    def __init__(self, levels: Sequence[int], num_groups: int, *, eps: float = 1e-3, variant: str = "fsqtok") -> None:
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"GroupedFSQ: num_groups must be a positive int, got {num_groups!r}")
        self.fsq = FSQ(levels, eps=eps, variant=variant)
        self.levels = self.fsq.levels
        self.num_groups = num_groups
        self.dim = self.fsq.dim
        self.in_channels = num_groups * self.dim
        self.codebook_size = self.fsq.codebook_size  # per group

    def extra_repr(self) -> str:
        return f"levels={self.levels}, num_groups={self.num_groups}, variant={self.fsq.variant!r}"

    def _grouped(self, z: Tensor) -> Tensor:
        """``(B, G d, *S)`` -> ``(B, d, G, *S)`` (a view)."""
        if z.ndim < 3 or z.shape[1] != self.in_channels:
            raise ValueError(
                f"GroupedFSQ: expected features (B, {self.in_channels}, *spatial) "
                f"({self.num_groups} groups x {self.dim}), got shape {tuple(z.shape)}"
            )
        return z.unflatten(1, (self.num_groups, self.dim)).transpose(1, 2)

    @staticmethod
    def _flat(z: Tensor) -> Tensor:
        """``(B, d, G, *S)`` -> ``(B, G d, *S)``."""
        return z.transpose(1, 2).flatten(1, 2)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize ``(B, G d, *S)`` features; ``indices`` are ``(B, G, *S)``."""
        out = self.fsq(self._grouped(z))
        out.z_q = self._flat(out.z_q)
        return out

    def decode_indices(self, indices: Tensor) -> Tensor:
        """int64 ``(B, G, *S)`` -> float32 ``z_q (B, G d, *S)``."""
        if indices.ndim < 2 or indices.shape[1] != self.num_groups:
            raise ValueError(f"GroupedFSQ: expected indices (B, {self.num_groups}, *spatial), got shape {tuple(indices.shape)}")
        return self._flat(self.fsq.decode_indices(indices))
