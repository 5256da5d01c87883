"""A plain VQ-VAE vector quantizer: the baseline of the FSQ paper's comparison.

Nearest-neighbour lookup in a learned codebook of ``codebook_size`` vectors of size
``dim``, a straight-through gradient, and the VQ-VAE losses:

* commitment ``beta * ||z - sg(e)||^2`` (always);
* codebook ``||sg(z) - e||^2``, only when the codebook is learned by gradient
  (``ema_decay=None``); with an EMA codebook (the default, as in VQ-VAE-2 and the paper's
  baseline) the codebook follows exponential moving averages of its assigned vectors.

Dead-code restarts (re-seeding codes whose EMA usage falls below a threshold from the
current batch) are off by default so that the codebook collapse the paper reports can be
reproduced; set ``dead_code_threshold > 0`` to enable them. A re-seeded code starts with the
EMA usage of an average code, and at least the threshold, so it is not dead again at once.

The EMA statistics are always computed in float32, whatever the module's dtype; rows of
non-finite features are left out of them, so one NaN batch cannot poison the codebook
(reading that batch's ``indices`` raises :class:`~fsqtok.quantizers.NonFiniteLatentError`).

In a distributed run the EMA statistics are summed across processes before the update,
so every rank keeps the same codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import (ChannelProjection, QuantizerOutput, all_finite, channels_first, check_channels, fp32_region,
                   restore_layout)


def _all_reduce_(t: Tensor) -> Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t


class VectorQuantizer(nn.Module):
    """VQ-VAE quantizer.

    Args:
        codebook_size: number of codes ``K``.
        dim: code vector size ``D``.
        in_channels: feature channels; projected to ``dim`` and back when different.
        commitment_weight: ``beta`` of the commitment loss.
        ema_decay: EMA decay of the codebook (e.g. 0.99); ``None`` learns it by gradient.
        dead_code_threshold: restart codes whose EMA cluster size is below this (0 = never).
        channel_last: :meth:`forward` takes ``(B, *spatial, C)``.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        in_channels: int | None = None,
        *,
        commitment_weight: float = 0.25,
        ema_decay: float | None = 0.99,
        dead_code_threshold: float = 0.0,
        channel_last: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"VectorQuantizer: codebook_size and dim must be >= 1, got {codebook_size}, {dim}")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"VectorQuantizer: ema_decay must be in (0, 1) or None, got {ema_decay}")
        self.codebook_size = int(codebook_size)
        self.dim = int(dim)
        self.in_channels = self.dim if in_channels is None else int(in_channels)
        self.commitment_weight = float(commitment_weight)
        self.ema_decay = ema_decay
        self.dead_code_threshold = float(dead_code_threshold)
        self.channel_last = bool(channel_last)
        self.eps = eps
        self.project_in = ChannelProjection(self.in_channels, self.dim)
        self.project_out = ChannelProjection(self.dim, self.in_channels)
        embed = torch.randn(self.codebook_size, self.dim)
        if ema_decay is None:
            self.embed = nn.Parameter(embed)
        else:
            self.register_buffer("embed", embed)
            self.register_buffer("ema_cluster_size", torch.ones(self.codebook_size))
            self.register_buffer("ema_embed_sum", embed.clone())

    def extra_repr(self) -> str:
        return (f"codebook_size={self.codebook_size}, dim={self.dim}, in_channels={self.in_channels}, "
                f"ema_decay={self.ema_decay}, dead_code_threshold={self.dead_code_threshold}")

    @property
    def codebook(self) -> Tensor:
        """float32 ``(K, D)`` code vectors."""
        return self.embed.float()

    def _nearest(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest code for each row of float32 ``flat (N, D)`` -> int64 ``(N,)``, and a 0-dim bool
        tensor telling whether every distance was finite (argmin over NaN picks an arbitrary code:
        NaN or inf in ``flat`` or in the codebook make a row's minimum distance NaN or inf)."""
        e = self.codebook
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t()) + e.pow(2).sum(1)[None]
        best, indices = dist.min(1)
        return indices, all_finite(best)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize ``z (B, in_channels, *spatial)`` (or channel-last).

        Returns:
            :class:`QuantizerOutput`: ``z_q`` of ``z``'s shape and dtype, int64
            ``indices (B, *spatial)``, and ``loss`` (commitment, plus codebook loss without EMA).
        """
        check_channels(z, self.in_channels, self.channel_last, "VectorQuantizer")
        with fp32_region(z.device.type):
            h = self.project_in(channels_first(z.float(), self.channel_last)).movedim(1, -1)  # (B, *S, D)
            flat = h.reshape(-1, self.dim)
            indices, finite = self._nearest(flat.detach())
            e = F.embedding(indices, self.codebook)
            loss = self.commitment_weight * F.mse_loss(flat, e.detach())
            if self.ema_decay is None:
                loss = loss + F.mse_loss(flat.detach(), e)
            elif self.training:
                self._ema_update(flat.detach(), indices)
            q = flat + (e - flat).detach()  # straight-through
            z_q = restore_layout(self.project_out(q.view_as(h).movedim(-1, 1)), self.channel_last).to(z.dtype)
        return QuantizerOutput(z_q=z_q, indices=indices.view(h.shape[:-1]), loss=loss,
                               codebook_size=self.codebook_size, finite=finite, source="VectorQuantizer")

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor) -> None:
        """EMA update from float32 ``flat (N, D)`` and its codes ``(N,)``, in float32 whatever the
        buffers' dtype; rows holding NaN or inf count for nothing (no host sync to find them)."""
        ok = torch.isfinite(flat).all(1)
        onehot_sum = torch.zeros(self.codebook_size, device=flat.device).index_add_(0, indices, ok.float())
        embed_sum = torch.zeros(self.codebook_size, self.dim, device=flat.device).index_add_(
            0, indices, torch.where(ok[:, None], flat, 0.0))
        _all_reduce_(onehot_sum)
        _all_reduce_(embed_sum)
        d = self.ema_decay
        cluster_size = self.ema_cluster_size.float().mul_(d).add_(onehot_sum, alpha=1 - d)
        ema_embed_sum = self.ema_embed_sum.float().mul_(d).add_(embed_sum, alpha=1 - d)
        n = cluster_size.sum()
        smoothed = (cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n  # Laplace
        embed = ema_embed_sum / smoothed[:, None]
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(flat[ok], cluster_size, ema_embed_sum, embed, n)
        self.ema_cluster_size.copy_(cluster_size)
        self.ema_embed_sum.copy_(ema_embed_sum)
        self.embed.copy_(embed)

    @torch.no_grad()
    def _restart_dead_codes(self, rows: Tensor, cluster_size: Tensor, ema_embed_sum: Tensor, embed: Tensor,
                            n: Tensor) -> None:
        """Re-seed codes whose EMA usage is below the threshold with rows of the batch, in place on
        the float32 statistics. A re-seeded code gets the usage of an average code (``n / K``), at
        least the threshold, and the matching sum, so that it is not dead again at the next step."""
        dead = cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:  # the same on every rank: the statistics are all-reduced
            return
        # the same replacement vectors on every rank: rank 0's batch rows (its codes if it has no finite row), broadcast
        source = rows if rows.shape[0] else embed
        pick = source[torch.randint(0, source.shape[0], (n_dead,), device=rows.device)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(pick, src=0)
        fresh = torch.clamp(n / self.codebook_size, min=self.dead_code_threshold)
        embed[dead] = pick
        ema_embed_sum[dead] = pick * fresh
        cluster_size[dead] = fresh

    def decode_indices(self, indices: Tensor) -> Tensor:
        """int64 ``(B, *spatial)`` -> float32 ``z_q (B, in_channels, *spatial)`` (or channel-last)."""
        if indices.is_floating_point():
            raise TypeError(f"VectorQuantizer: indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"VectorQuantizer: indices must lie in [0, {self.codebook_size})")
        with fp32_region(indices.device.type):
            q = F.embedding(indices.long(), self.codebook)
            return restore_layout(self.project_out(q.movedim(-1, 1)), self.channel_last)
