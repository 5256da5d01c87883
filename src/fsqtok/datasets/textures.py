"""The one texture source of the rendered datasets: scikit-image's bundled photos and textures.

Photos are split into train and val **by source photo**, so no photo feeds both (its colour wheel
adds saturated hues the photos lack); the three textures (brick, grass, gravel) serve every split.
:mod:`~fsqtok.datasets.samples` crops the photos, :mod:`~fsqtok.datasets.rgbd` and
:mod:`~fsqtok.datasets.panoptic` paint surfaces with :func:`texture`. Needs scikit-image:
``pip install 'fsqtok[samples]'``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

TRAIN_PHOTOS = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina",
                "motorcycle_left", "motorcycle_right", "colorwheel")
VAL_PHOTOS = ("coffee", "rocket")
TEXTURES = ("brick", "grass", "gravel")


class SampleDataError(RuntimeError):
    """A sample source is not installed; the message names the package to install."""


@lru_cache(maxsize=None)
def skimage_array(name: str) -> np.ndarray:
    """scikit-image's bundled image ``name`` as stored: uint8 ``(H, W)`` or ``(H, W, 3|4)``."""
    try:
        import skimage.data
    except ImportError:
        raise SampleDataError("sample images need scikit-image: pip install 'fsqtok[samples]'") from None
    if name.startswith("motorcycle_"):  # the two views of the Middlebury stereo pair
        left, right, _ = skimage.data.stereo_motorcycle()
        return np.asarray(left if name.endswith("left") else right)
    return np.asarray(getattr(skimage.data, name)())


@lru_cache(maxsize=None)
def texture(name: str) -> np.ndarray:
    """float32 ``(h, w, 3)`` in [0, 1] (grey images repeated to three channels)."""
    a = skimage_array(name).astype(np.float32) / 255.0
    return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]


def photo(name: str) -> Tensor:
    """float32 ``(3, H, W)`` in [-1, 1] (grey images repeated to three channels)."""
    a = skimage_array(name)
    a = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]
    return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1


def split_textures(split: str) -> tuple[str, ...]:
    """The surfaces a rendered scene of ``split`` may carry: every texture and the split's photos but the colour wheel."""
    photos = TRAIN_PHOTOS if split == "train" else VAL_PHOTOS
    return TEXTURES + tuple(p for p in photos if p != "colorwheel")
