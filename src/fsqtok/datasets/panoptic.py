"""Synthetic panoptic scenes: real Fashion-MNIST items composited on real textures, with exact labels.

Each scene is a crop of a real texture or photo (the one "stuff" class, 0) with 2-6 Fashion-MNIST
items pasted on it at random sizes and places, tinted, drawn back to front so that they overlap.
An item's mask is where its photo is brighter than a threshold. Labels: semantic class = Fashion-MNIST
label + 1 (1..10); instance id = 1..k numbered in raster order of each visible item's first pixel,
so the ids are canonical. Items left with fewer than ``MIN_PIXELS`` visible pixels are not drawn.

Items come from :func:`fsqtok.datasets.fashion_mnist.load_fashion_mnist` (Debian's ``dataset-fashion-mnist``
or ``$FSQTOK_FASHION_MNIST``): train scenes use the 60k training items, val/test the 10k test items.
Sample ``i`` of a split is a pure function of ``(seed, split, i)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import fashion_mnist
from .fashion_mnist import default_root, load_fashion_mnist
from .rgbd import SPLITS
from .textures import split_textures, texture

CLASSES = ("background", *fashion_mnist.CLASSES)  # semantic class c > 0 is Fashion-MNIST label c - 1
NUM_CLASSES = len(CLASSES)
MAX_INSTANCES = 6
MIN_PIXELS = 12


@lru_cache(maxsize=4)
def _items(split: str, root: str) -> tuple[np.ndarray, np.ndarray]:
    """Items of a scene split (train: Fashion-MNIST train; val, test: its test split), read once per root."""
    return load_fashion_mnist("train" if split == "train" else "test", root)


def compose(size: int, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """One scene: rgb ``(3, s, s)`` in [0, 1] and int64 labels ``(2, s, s)`` (class, instance)."""
    images, labels = _items(split, str(default_root()))
    names = split_textures(split)
    tex = texture(names[rng.integers(len(names))])
    crop = int(rng.integers(size, min(tex.shape[:2]) + 1))
    top, left = rng.integers(tex.shape[0] - crop + 1), rng.integers(tex.shape[1] - crop + 1)
    bg = torch.from_numpy(tex[top:top + crop, left:left + crop].copy()).permute(2, 0, 1)[None]
    rgb = F.interpolate(bg, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].numpy()
    rgb = rgb * rng.uniform(0.5, 1.0, (3, 1, 1))
    items = []  # (class, mask (s, s), appearance (3, s, s)), back to front
    for _ in range(rng.integers(2, MAX_INSTANCES + 1)):
        k = int(rng.integers(len(images)))
        side = int(rng.integers(size // 3, size * 3 // 4 + 1))
        item = torch.from_numpy(images[k].astype(np.float32) / 255)[None, None]
        item = F.interpolate(item, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()
        y0, x0 = rng.integers(-side // 4, size - side * 3 // 4, 2)
        canvas = np.zeros((size, size), np.float32)
        ys, xs = slice(max(y0, 0), min(y0 + side, size)), slice(max(x0, 0), min(x0 + side, size))
        canvas[ys, xs] = item[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        colour = rng.uniform(0.2, 1.0, (3, 1, 1))
        items.append((int(labels[k]) + 1, canvas > 0.15, colour * (0.3 + 0.7 * canvas)))
    owner = np.full((size, size), -1)
    for j, (_, mask, _) in enumerate(items):
        owner[mask] = j
    keep = [j for j in range(len(items)) if (owner == j).sum() >= MIN_PIXELS]
    owner = np.full((size, size), -1)
    for j in keep:  # redraw without the hidden items
        owner[items[j][1]] = j
    target = np.zeros((2, size, size), np.int64)
    first = sorted(keep, key=lambda j: int(np.flatnonzero(owner == j)[0]) if (owner == j).any() else size * size)
    for inst, j in enumerate(first, start=1):
        m = owner == j
        if not m.any():
            continue
        rgb = np.where(m[None], items[j][2], rgb)
        target[0][m], target[1][m] = items[j][0], inst
    return rgb.clip(0, 1).astype(np.float32), target


def synthetic_panoptic(n: int, size: int = 64, split: str = "train", seed: int = 0,
                       start: int = 0) -> tuple[Tensor, Tensor]:
    """Scenes ``start .. start+n-1``: rgb ``(n, 3, s, s)`` in [-1, 1], int64 labels ``(n, 2, s, s)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = [compose(size, np.random.default_rng([seed, SPLITS[split], i, 7]), split) for i in range(start, start + n)]
    return (torch.from_numpy(np.stack([o[0] for o in out])) * 2 - 1,
            torch.from_numpy(np.stack([o[1] for o in out])))
