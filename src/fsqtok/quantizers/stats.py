"""Codebook usage statistics shared by every quantizer.

Three figures describe how a bottleneck uses its codes:

* **usage**: the fraction of the codebook that appeared at least once;
* **perplexity**: ``exp(H)`` of the empirical code distribution, the "effective" number of codes;
* **bits per token**: ``log2(codebook_size)``, what one index costs uncompressed.

:class:`CodebookUsage` accumulates code counts over many batches and, with
:meth:`CodebookUsage.all_reduce`, across processes, so the figures describe a whole
evaluation set rather than one batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Dense per-code counters above this size would cost more memory than they are worth
# (2**24 int64 counters = 128 MiB); such codebooks are split per stage or per group.
MAX_DENSE_CODEBOOK = 2**24


def bits_per_token(codebook_size: int) -> float:
    """Bits that one index of a ``codebook_size``-way codebook carries: ``log2(codebook_size)``."""
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    return math.log2(codebook_size)


def code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """How often each code occurs.

    Args:
        indices: int tensor of any shape, values in ``[0, codebook_size)``.
        codebook_size: number of codes.
    Returns:
        int64 ``(codebook_size,)`` counts.
    """
    if codebook_size > MAX_DENSE_CODEBOOK:
        raise ValueError(
            f"codebook_size={codebook_size} is too large for dense usage counts "
            f"(max {MAX_DENSE_CODEBOOK}); count per residual stage or per level group instead"
        )
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(
            f"indices out of range [0, {codebook_size}): min {int(flat.min())}, max {int(flat.max())}"
        )
    return torch.bincount(flat, minlength=codebook_size)


def usage_from_counts(counts: Tensor) -> float:
    """Fraction of codes with a non-zero count, from ``(..., K)`` counts (averaged over leading axes)."""
    return (counts > 0).double().mean().item()


def perplexity_from_counts(counts: Tensor) -> float:
    """``exp(entropy)`` of the code distribution, from ``(K,)`` or ``(S, K)`` counts.

    For ``(S, K)`` (one row per residual stage) the per-stage perplexities are averaged.
    A row with no counts has perplexity 0.
    """
    counts = counts.double().reshape(-1, counts.shape[-1])
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp_min(1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    ppl = torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))
    return ppl.mean().item()


class CodebookUsage:
    """Accumulates code counts over batches (and processes) for usage and perplexity.

    Args:
        codebook_size: codes per stage.
        num_stages: residual stages; indices passed to :meth:`update` then have the stage
            axis at 1, ``(B, S, *spatial)``.

    Example::

        acc = CodebookUsage(fsq.codebook_size)
        for batch in loader:
            acc.update(fsq(batch).indices)
        acc.all_reduce()          # no-op unless torch.distributed is initialised
        acc.usage, acc.perplexity
    """

    def __init__(self, codebook_size: int, num_stages: int = 1) -> None:
        if codebook_size > MAX_DENSE_CODEBOOK:
            raise ValueError(
                f"codebook_size={codebook_size} is too large for dense usage counts (max {MAX_DENSE_CODEBOOK})"
            )
        self.codebook_size = codebook_size
        self.num_stages = num_stages
        self.counts = torch.zeros(num_stages, codebook_size, dtype=torch.int64)

    def update(self, indices: Tensor) -> None:
        """Add a batch of indices: ``(B, *spatial)``, or ``(B, S, *spatial)`` when ``num_stages > 1``."""
        indices = indices.detach().cpu()
        if self.num_stages == 1:
            self.counts[0] += code_counts(indices, self.codebook_size)
            return
        if indices.ndim < 2 or indices.shape[1] > self.num_stages:
            raise ValueError(
                f"expected indices (B, S<={self.num_stages}, ...), got shape {tuple(indices.shape)}"
            )
        for s in range(indices.shape[1]):
            self.counts[s] += code_counts(indices[:, s], self.codebook_size)

    def all_reduce(self) -> None:
        """Sum counts across processes (a no-op outside ``torch.distributed``)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            backend = torch.distributed.get_backend()
            device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
            counts = self.counts.to(device)
            torch.distributed.all_reduce(counts)
            self.counts = counts.cpu()

    def reset(self) -> None:
        self.counts.zero_()

    @property
    def usage(self) -> float:
        """Fraction of codes used at least once (averaged over stages)."""
        return usage_from_counts(self.counts)

    @property
    def perplexity(self) -> float:
        """Perplexity of the accumulated code distribution (averaged over stages)."""
        return perplexity_from_counts(self.counts)

    @property
    def total(self) -> int:
        """Number of tokens counted (per stage)."""
        return int(self.counts[0].sum())
