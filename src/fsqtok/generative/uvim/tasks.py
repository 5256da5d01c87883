"""UViM tasks: small swappable modules that say how a target enters the oracle, how the base model's
output is scored and how it becomes a prediction (big_vision's ``input_pp / loss_fn / predict_outputs``).

Conventions (all tensors batched, ``H, W`` the image size):

* ``image``: ``(B, 3, H, W)`` RGB in [-1, 1]; :meth:`Task.context` turns it into what both the oracle
  and the base model see (``(B, context_channels, H, W)``): the image itself, or its grey version for
  colorization.
* depth target ``(B, 1, H, W)`` metres (NaN, inf or <= 0 = invalid); colorization target
  ``(B, 3, H, W)`` RGB in [-1, 1]; panoptic target int64 ``(B, 2, H, W)``: semantic class (0 is the
  "stuff" background) and instance id (0 = none; 1..max_instances).
* base-model output ("logits") ``(B, output_channels, H, W)``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ...media.image import LUMA
from ...metrics import DepthErrorAccumulator

TASKS = ("depth", "colorization", "panoptic")


class Task(Protocol):
    name: str
    context_channels: int
    target_channels: int
    output_channels: int

    def context(self, image: Tensor) -> Tensor: ...
    def encode_target(self, target: Tensor) -> Tensor: ...
    def loss(self, logits: Tensor, target: Tensor) -> Tensor: ...
    def predict(self, logits: Tensor) -> Tensor: ...
    def metrics(self) -> "Metrics": ...
    def visualize(self, y: Tensor) -> Tensor: ...


class Metrics(Protocol):
    def update(self, pred: Tensor, target: Tensor) -> None: ...
    def compute(self) -> dict[str, float]: ...


def grey(image: Tensor) -> Tensor:
    """ITU-R 601 luma of ``(B, 3, H, W)`` RGB in [-1, 1] -> ``(B, 1, H, W)`` in [-1, 1]."""
    w = image.new_tensor(LUMA).view(1, 3, 1, 1)
    return (image * w).sum(1, keepdim=True)


class DepthTask:
    """Metric depth as classification over ``bins`` depth bins (big_vision's UViM depth task).

    big_vision bins depth linearly in ``[min_depth, max_depth]``; ``spacing="log"`` (the default
    here) bins log depth instead, so near and far scenes get the same relative resolution
    (the synthetic scenes span 0.3-30 m). Pixels with invalid depth get no loss. The oracle sees
    the bin coordinate in [-1, 1] and a validity channel; :meth:`predict` returns bin centres.
    """

    name = "depth"
    context_channels = 3
    target_channels = 2
    channels_in_target = 1

    def __init__(self, bins: int, min_depth: float, max_depth: float, spacing: str = "log") -> None:
        if spacing not in ("log", "linear"):
            raise ValueError(f"depth spacing must be 'log' or 'linear', got {spacing!r}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"depth range needs 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.bins, self.min_depth, self.max_depth, self.spacing = bins, min_depth, max_depth, spacing
        self.output_channels = bins

    def _fwd(self, d: Tensor) -> Tensor:
        if self.spacing == "log":
            return (d.log() - math.log(self.min_depth)) / (math.log(self.max_depth) - math.log(self.min_depth))
        return (d - self.min_depth) / (self.max_depth - self.min_depth)

    def _inv(self, t: Tensor) -> Tensor:
        if self.spacing == "log":
            return torch.exp(math.log(self.min_depth) + t * (math.log(self.max_depth) - math.log(self.min_depth)))
        return self.min_depth + t * (self.max_depth - self.min_depth)

    @staticmethod
    def valid(depth: Tensor) -> Tensor:
        return torch.isfinite(depth) & (depth > 0)

    def context(self, image: Tensor) -> Tensor:
        return image

    def to_bins(self, depth: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W)`` metres -> int64 bins ``(B, H, W)`` (0 where invalid) and the bool validity mask."""
        valid = self.valid(depth)[:, 0]
        d = torch.where(valid, depth[:, 0].float(), torch.ones_like(depth[:, 0], dtype=torch.float32))
        d = d.clamp(self.min_depth, self.max_depth)
        b = (self._fwd(d) * self.bins).floor().long().clamp_(0, self.bins - 1)
        return torch.where(valid, b, torch.zeros_like(b)), valid

    def encode_target(self, target: Tensor) -> Tensor:
        b, valid = self.to_bins(target)
        coord = ((b.float() + 0.5) / self.bins * 2 - 1) * valid
        return torch.stack([coord, valid.float()], 1)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        b, valid = self.to_bins(target)
        ce = F.cross_entropy(logits.float(), b, reduction="none")
        return (ce * valid).sum() / valid.sum().clamp_min(1)

    def predict(self, logits: Tensor) -> Tensor:
        centre = (logits.argmax(1, keepdim=True).float() + 0.5) / self.bins
        return self._inv(centre)

    def metrics(self) -> Metrics:
        return _DepthMetrics()

    def visualize(self, y: Tensor) -> Tensor:
        """Depth -> ``(B, 3, H, W)`` in [0, 1], near bright (log scale over the task range); invalid black."""
        t = self._fwd(torch.where(self.valid(y), y, torch.full_like(y, self.max_depth)).clamp(
            self.min_depth, self.max_depth))
        return ((1 - t) * self.valid(y)).expand(-1, 3, -1, -1)


class _DepthMetrics:
    def __init__(self) -> None:
        self.acc = DepthErrorAccumulator()

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.acc.update(pred.cpu(), target.cpu())

    def compute(self) -> dict[str, float]:
        return self.acc.compute()


class ColorizationTask:
    """Colour from grey: the context is the luma of the image, the target the RGB image; L2 loss."""

    name = "colorization"
    context_channels = 1
    target_channels = 3
    output_channels = 3
    channels_in_target = 3

    def context(self, image: Tensor) -> Tensor:
        return grey(image) if image.shape[1] == 3 else image

    def encode_target(self, target: Tensor) -> Tensor:
        return target

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(logits.float(), target.float())

    def predict(self, logits: Tensor) -> Tensor:
        return logits.clamp(-1, 1)

    def metrics(self) -> Metrics:
        from .metrics import ColorizationMetrics

        return ColorizationMetrics()

    def visualize(self, y: Tensor) -> Tensor:
        return (y.clamp(-1, 1) + 1) / 2


class PanopticTask:
    """Semantic class and instance id per pixel, cross-entropy on each (big_vision's panoptic task).

    Class 0 is the one "stuff" class (background); classes ``1..num_classes-1`` are "things".
    Instance ids are canonical (the data numbers instances in a fixed order), so they are learnable.
    """

    name = "panoptic"
    context_channels = 3
    channels_in_target = 2

    def __init__(self, num_classes: int, max_instances: int) -> None:
        if num_classes < 2 or max_instances < 1:
            raise ValueError(f"panoptic needs num_classes >= 2 and max_instances >= 1, got {num_classes}, {max_instances}")
        self.num_classes, self.max_instances = num_classes, max_instances
        self.target_channels = self.output_channels = num_classes + max_instances + 1

    def context(self, image: Tensor) -> Tensor:
        return image

    def _check(self, target: Tensor) -> Tensor:
        t = target.long()
        if t.shape[1] != 2 or int(t[:, 0].max()) >= self.num_classes or int(t[:, 1].max()) > self.max_instances \
                or int(t.min()) < 0:
            raise ValueError(f"panoptic target must be int (B, 2, H, W) with classes < {self.num_classes} and "
                             f"instance ids <= {self.max_instances}, got shape {tuple(t.shape)}, max "
                             f"{[int(t[:, i].max()) for i in range(min(2, t.shape[1]))]}")
        return t

    def encode_target(self, target: Tensor) -> Tensor:
        t = self._check(target)
        sem = F.one_hot(t[:, 0], self.num_classes)
        inst = F.one_hot(t[:, 1], self.max_instances + 1)
        return torch.cat([sem, inst], -1).permute(0, 3, 1, 2).float()

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        t = self._check(target)
        sem, inst = logits.float().split([self.num_classes, self.max_instances + 1], 1)
        return F.cross_entropy(sem, t[:, 0]) + F.cross_entropy(inst, t[:, 1])

    def predict(self, logits: Tensor) -> Tensor:
        sem, inst = logits.split([self.num_classes, self.max_instances + 1], 1)
        s, i = sem.argmax(1), inst.argmax(1)
        return torch.stack([s, torch.where(s > 0, i, torch.zeros_like(i))], 1)

    def metrics(self) -> Metrics:
        return _PanopticMetrics(self.num_classes)

    @staticmethod
    def visualize(y: Tensor) -> Tensor:
        """Each (class, instance) pair gets a fixed pseudo-random colour: ``(B, 3, H, W)`` in [0, 1]."""
        key = (y[:, 0].long() * 1000 + y[:, 1].long()) * 2654435761 % (2**32)
        rgb = torch.stack([(key >> s) & 255 for s in (0, 8, 16)], 1).float() / 255
        return torch.where(y[:, :1] == 0, torch.full_like(rgb, 0.1), rgb)


class _PanopticMetrics:
    """PQ, SQ and RQ through torchmetrics' ``PanopticQuality`` (things = classes 1.., stuff = 0)."""

    def __init__(self, num_classes: int) -> None:
        from torchmetrics.detection import PanopticQuality  # imported on first use: importing torchmetrics is slow
        self.pq = PanopticQuality(things=set(range(1, num_classes)), stuffs={0}, return_sq_and_rq=True,
                                  allow_unknown_preds_category=True)

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.pq.update(pred.long().cpu().permute(0, 2, 3, 1), target.long().cpu().permute(0, 2, 3, 1))

    def compute(self) -> dict[str, float]:
        pq, sq, rq = (float(v) for v in self.pq.compute().reshape(-1)[:3])
        return {"pq": 100 * pq, "sq": 100 * sq, "rq": 100 * rq}

    def scene_stats(self, pred: Tensor, target: Tensor) -> Tensor:
        """Each scene's share of what PQ sums over a set: ``(N, 4, categories)`` float64, the per-category
        IoU sum, true positives, false positives and false negatives of pred/target ``(N, 2, H, W)``.
        :func:`panoptic_quality_from_stats` of their sum over any subset of scenes is that subset's PQ
        (bootstrap intervals)."""
        one, rows = self.pq.clone(), []
        for p, t in zip(pred, target):
            one.reset()
            one.update(p[None].long().cpu().permute(0, 2, 3, 1), t[None].long().cpu().permute(0, 2, 3, 1))
            rows.append(torch.stack([one.iou_sum.double(), one.true_positives.double(),
                                     one.false_positives.double(), one.false_negatives.double()]))
        return torch.stack(rows)


def panoptic_quality_from_stats(stats: Tensor) -> dict[str, float]:
    """PQ / SQ / RQ (in %) from summed :meth:`_PanopticMetrics.scene_stats` ``(4, categories)``, as
    ``PanopticQuality`` computes them: per-category SQ = IoU sum / TP, RQ = TP / (TP + FP/2 + FN/2),
    PQ = SQ * RQ, averaged over the categories that occur (in the prediction or the target)."""
    iou, tp, fp, fn = stats
    denom = tp + 0.5 * fp + 0.5 * fn
    sq = torch.where(tp > 0, iou / tp.clamp(min=1), 0.0)
    rq = torch.where(denom > 0, tp / denom.clamp(min=1e-12), 0.0)
    seen = denom > 0
    return {"pq": 100 * float((sq * rq)[seen].mean()), "sq": 100 * float(sq[seen].mean()),
            "rq": 100 * float(rq[seen].mean())}


def make_task(name: str, **options: Any) -> Task:
    """The task called ``name`` (one of :data:`TASKS`) with its options (see each class)."""
    if name == "depth":
        return DepthTask(options["depth_bins"], options["min_depth"], options["max_depth"], options["depth_spacing"])
    if name == "colorization":
        return ColorizationTask()
    if name == "panoptic":
        return PanopticTask(options["num_classes"], options["max_instances"])
    raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")


__all__ = ["TASKS", "Task", "Metrics", "DepthTask", "ColorizationTask", "PanopticTask", "make_task", "grey",
           "panoptic_quality_from_stats"]
