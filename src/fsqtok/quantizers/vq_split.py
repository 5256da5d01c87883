"""VQ with codebook splitting: the VQ baseline of UViM (and of the FSQ paper's UViM comparison).

big_vision's UViM keeps its VQ codebook alive by *splitting*: after each EMA update, while some
code's discounted count is below a threshold, the most used code is split in two. The least used
code takes a slightly perturbed copy of the most used one, and the two share its count and its
running sum. FSQ needs no such trick; the FSQ paper's point is that it matches VQ *with* splitting.

:class:`SplittingVectorQuantizer` adds splitting to :class:`fsqtok.quantizers.VectorQuantizer`
(EMA codebook) without changing it: it runs the parent's EMA update, then splits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .vq import VectorQuantizer

PERTURB = 1e-3  # multiplicative noise on the copied code vector, as in big_vision


class SplittingVectorQuantizer(VectorQuantizer):
    """EMA-codebook VQ that revives unused codes by splitting the most used one (big_vision UViM).

    Args:
        codebook_size, dim, in_channels, commitment_weight, ema_decay: as :class:`VectorQuantizer`
            (``ema_decay`` must not be ``None``: splitting acts on the EMA statistics).
        split_threshold: a code whose EMA count (tokens per batch, decayed) falls below this is
            replaced by half of the most used code. big_vision's threshold (0.1 on discounted sums
            with momentum 0.995) is 5e-4 tokens per batch in these units: a code unused for ~1500
            steps. With ``ema_decay=0.99`` and the initial count of 1, a code unused for ~690 steps
            falls below 1e-3.

    Splitting is deterministic (its noise comes from a generator seeded by the running count of
    splits, a buffer), so every process of a distributed run, whose EMA statistics are already
    all-reduced, makes the same splits.
    """

    def __init__(self, codebook_size: int, dim: int, in_channels: int | None = None, *,
                 split_threshold: float = 1e-3, **kwargs) -> None:
        super().__init__(codebook_size, dim, in_channels, **kwargs)
        if self.ema_decay is None:
            raise ValueError("SplittingVectorQuantizer: splitting needs an EMA codebook; ema_decay must not be None")
        if not split_threshold > 0:
            raise ValueError(f"SplittingVectorQuantizer: split_threshold must be > 0, got {split_threshold}")
        self.split_threshold = float(split_threshold)
        self.register_buffer("num_splits", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", split_threshold={self.split_threshold}"

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor) -> None:
        super()._ema_update(flat, indices)
        self.split_dead_codes()

    @torch.no_grad()
    def split_dead_codes(self) -> int:
        """Split the most used code into each code whose EMA count is below ``split_threshold``.

        One code per iteration, re-picking the most used code each time (a freshly halved code
        can be picked again), at most ``codebook_size`` iterations. Returns the number of splits.
        """
        counts, sums = self.ema_cluster_size, self.ema_embed_sum
        done = 0
        for _ in range(self.codebook_size):
            low = int(counts.argmin())
            if float(counts[low]) >= self.split_threshold:
                break
            high = int(counts.argmax())
            if high == low:
                break
            g = torch.Generator().manual_seed(int(self.num_splits))
            noise = 1.0 + PERTURB * (2 * torch.rand(self.dim, generator=g) - 1)
            counts[high] /= 2
            counts[low] = counts[high]
            sums[high] /= 2
            sums[low] = sums[high] * noise.to(sums)
            self.embed[high] = sums[high] / counts[high]
            self.embed[low] = sums[low] / counts[low]
            self.num_splits += 1
            done += 1
        return done
