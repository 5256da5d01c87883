"""Pixel reconstruction losses with optional validity masks (depth: NaN/inf/<=0 are invalid)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ReconstructionLoss"]


class ReconstructionLoss(nn.Module):
    """Mean L1 (``kind="l1"``) or squared error (``kind="l2"``) over the valid elements.

    ``mask`` (bool, broadcastable to ``x``) marks valid elements. Invalid elements are replaced
    by zeros *before* the difference, so their values (even NaN/inf) reach neither the loss
    nor the gradient. With no valid element the loss is an exact 0 that still depends on ``x``
    (so ``backward`` works and gives zero gradients), never NaN.
    """

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        kind = kind.lower()
        if kind in ("mse", "l2"):
            kind = "l2"
        if kind not in ("l1", "l2"):
            raise ValueError(f"ReconstructionLoss kind must be 'l1' or 'l2', got {kind!r}")
        self.kind = kind

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        x, y = x.float(), y.float()
        if mask is None:
            d = x - y
            return d.abs().mean() if self.kind == "l1" else d.square().mean()
        shape = torch.broadcast_shapes(x.shape, y.shape, mask.shape)
        mask = mask.to(torch.bool).expand(shape)
        x, y = x.expand(shape), y.expand(shape)
        zero = x.new_zeros(())
        d = torch.where(mask, x, zero) - torch.where(mask, y, zero)
        err = d.abs() if self.kind == "l1" else d.square()
        count = mask.sum().clamp_min(1).to(err.dtype)
        return err.sum() / count

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
