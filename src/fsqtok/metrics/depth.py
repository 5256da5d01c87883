"""Depth-estimation errors over valid target pixels (finite and > 0, and ``mask`` if given)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["depth_errors", "DepthErrorAccumulator", "DEPTH_METRICS"]

DEPTH_METRICS = ("rmse", "abs_rel", "delta1")


def _valid(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    valid = torch.isfinite(target) & (target > 0)
    if mask is not None:
        valid = valid & mask.to(torch.bool).expand_as(target)
    return valid


def depth_errors(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
    """Per-sample ``{"rmse", "abs_rel", "delta1"}``, each ``(B,)`` float32.

    - ``rmse = sqrt(mean((pred - target)^2))`` in metres,
    - ``abs_rel = mean(|pred - target| / target)``,
    - ``delta1 = mean(max(pred/target, target/pred) < 1.25)`` (pred <= 0 counts as wrong),

    each over the valid pixels of that sample (``target`` finite and > 0, ``mask`` true). A
    sample without valid pixels gets NaN. Computed in float64; ``pred`` values at invalid
    pixels are ignored (even NaN).
    """
    if pred.shape != target.shape:
        raise ValueError(f"depth_errors shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    valid = _valid(pred, target, mask)
    b = pred.shape[0]
    v = valid.reshape(b, -1)
    t = torch.where(valid, target.double(), 1.0).reshape(b, -1)
    p = torch.where(valid, pred.double(), 1.0).reshape(b, -1)
    n = v.sum(1).double()
    err = (p - t) * v
    sq = err.square().sum(1)
    rel = (err.abs() / t).sum(1)
    pc = p.clamp_min(1e-12)
    ratio = torch.maximum(pc / t, t / pc)
    good = ((ratio < 1.25) & (p > 0) & v).sum(1).double()
    nan = torch.full_like(n, float("nan"))
    safe = n.clamp_min(1)
    return {
        "rmse": torch.where(n > 0, (sq / safe).sqrt(), nan).float(),
        "abs_rel": torch.where(n > 0, rel / safe, nan).float(),
        "delta1": torch.where(n > 0, good / safe, nan).float(),
    }


class DepthErrorAccumulator:
    """Dataset-level depth errors from running sums, mergeable across batches and processes.

    Keeps, in float64, the sum of each per-image metric of :func:`depth_errors` and the number
    of images with at least one valid pixel; :meth:`compute` returns the per-image averages
    (the usual NYU/KITTI protocol), so accumulating batch by batch equals one
    :func:`depth_errors` call on everything followed by ``nanmean``. Sums add up, so
    accumulators can be merged with ``+`` / :meth:`merge` or summed across processes with
    :meth:`all_reduce`.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        # [sum rmse, sum abs_rel, sum delta1, images]
        self.state = torch.zeros(len(DEPTH_METRICS) + 1, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """Add one batch; returns its per-sample errors."""
        errs = depth_errors(pred, target, mask)
        ok = ~torch.isnan(errs["rmse"])
        add = torch.stack([errs[k].double()[ok].sum() for k in DEPTH_METRICS] + [ok.sum().double()])
        self.state = self.state.to(add.device) + add
        return errs

    def merge(self, other: DepthErrorAccumulator) -> DepthErrorAccumulator:
        self.state = self.state + other.state.to(self.state.device)
        return self

    def __add__(self, other: DepthErrorAccumulator) -> DepthErrorAccumulator:
        out = DepthErrorAccumulator(self.state.device)
        out.state = self.state + other.state.to(self.state.device)
        return out

    def all_reduce(self) -> DepthErrorAccumulator:
        """Sum the state over all ``torch.distributed`` processes (no-op when not initialised).
        With the NCCL backend keep the accumulator on the process's GPU."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.state, op=dist.ReduceOp.SUM)
        return self

    def reset(self) -> None:
        self.state.zero_()

    @property
    def count(self) -> int:
        return int(self.state[-1].item())

    def compute(self) -> dict[str, float]:
        """``{"rmse", "abs_rel", "delta1"}`` averaged over images (NaN before any valid image)."""
        n = self.state[-1].item()
        if n == 0:
            return {k: float("nan") for k in DEPTH_METRICS}
        return {k: (self.state[i] / n).item() for i, k in enumerate(DEPTH_METRICS)}
