"""Real RGB-D evaluation frames that ship in packages (no network).

* ``motorcycle``: the Middlebury motorcycle pair in scikit-image; the left view with depth from its
  disparity, ``depth_mm = 994.978 * 193.001 / (d + 31.086)`` (focal length x baseline / (d + doffs));
  invalid disparity (+inf) is invalid depth.
* ``castel``: the 30 real 640x480 frames of Debian's ``visp-images-data``
  (``.../mbt-depth/castel/castel/``): grey ``image_XXXX.pgm`` and ``depth_image_XXXX.bin`` (uint32 h, w
  little-endian, then uint16 depth x 0.000124986647 m; 0 = no measurement). ``$FSQTOK_CASTEL_DIR``, when
  set, names another folder of such frames (the test suite points it at a committed subset).

:func:`real_depth_frames` centre-crops each frame to a square and resizes it to ``size``: the image
with antialiasing, the depth by nearest neighbour (so no depth is invented across an edge).
Invalid depth is returned as +inf. Images are ``(N, 3, s, s)`` in [-1, 1] (grey frames repeated).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SOURCES = ("motorcycle", "castel")
CASTEL_DEBIAN_DIR = Path("/usr/share/visp-images-data/ViSP-images/mbt-depth/castel/castel")
CASTEL_ENV = "FSQTOK_CASTEL_DIR"  # a folder of castel frames that replaces CASTEL_DEBIAN_DIR
CASTEL_UNIT = 0.000124986647  # metres per depth step
MOTORCYCLE_FB, MOTORCYCLE_DOFFS = 994.978 * 193.001, 31.086  # focal length (px) x baseline (mm); doffs (px)


class RealDepthError(RuntimeError):
    """A real-frame source is missing; the message says what to install."""


def motorcycle_depth(disparity: np.ndarray) -> np.ndarray:
    """Middlebury motorcycle disparity (px; +inf invalid) -> depth in metres (+inf invalid)."""
    d = np.asarray(disparity, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = MOTORCYCLE_FB / (d + MOTORCYCLE_DOFFS) / 1000.0
    return np.where(np.isfinite(d) & (depth > 0), depth, np.inf)


def read_castel_depth(path: str | Path) -> np.ndarray:
    """A ViSP ``depth_image_XXXX.bin`` -> float64 ``(h, w)`` metres, +inf where no measurement."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a ViSP depth file (needs an 8-byte h, w header)")
    h, w = (int(v) for v in np.frombuffer(raw[:8], "<u4"))
    if len(raw) != 8 + 2 * h * w:
        raise ValueError(f"{path}: header says {h}x{w} uint16 values but the file holds {(len(raw) - 8) // 2}")
    z = np.frombuffer(raw[8:], "<u2").reshape(h, w).astype(np.float64) * CASTEL_UNIT
    return np.where(z > 0, z, np.inf)


def castel_dir() -> Path:
    """The castel frames' folder: ``$FSQTOK_CASTEL_DIR`` when set, else Debian's."""
    d = Path(os.environ[CASTEL_ENV]) if os.environ.get(CASTEL_ENV) else CASTEL_DEBIAN_DIR
    if (d / "depth_image_0000.bin").is_file():
        return d
    raise RealDepthError(f"{d}: no castel frames (depth_image_0000.bin); the castel frames need Debian's "
                         f"visp-images-data (apt-get install visp-images-data) or a folder of them in ${CASTEL_ENV}")


def _square(img: Tensor, depth: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Centre square crop of ``(C, H, W)`` image and ``(H, W)`` depth, resized to ``size``."""
    h, w = depth.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img, depth = img[:, top:top + s, left:left + s], depth[top:top + s, left:left + s]
    img = F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    depth = F.interpolate(depth[None, None], size=(size, size), mode="nearest")[0]
    return img.clamp(-1, 1), depth


def real_depth_frames(source: str, size: int = 64) -> tuple[Tensor, Tensor]:
    """All frames of ``source``: images ``(N, 3, s, s)`` in [-1, 1], depth ``(N, 1, s, s)`` metres (+inf invalid)."""
    if source == "motorcycle":
        import skimage.data

        left, _, disparity = skimage.data.stereo_motorcycle()
        img = torch.from_numpy(np.asarray(left, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
        pairs = [_square(img, torch.from_numpy(motorcycle_depth(disparity)).float(), size)]
    elif source == "castel":
        from PIL import Image

        d = castel_dir()
        pairs = []
        for bin_path in sorted(d.glob("depth_image_*.bin")):
            grey = np.asarray(Image.open(d / bin_path.name.replace("depth_image_", "image_").replace(".bin", ".pgm")))
            img = torch.from_numpy(grey.astype(np.float32))[None].expand(3, -1, -1) / 127.5 - 1
            pairs.append(_square(img, torch.from_numpy(read_castel_depth(bin_path)).float(), size))
    else:
        raise ValueError(f"real depth source must be one of {', '.join(SOURCES)}, got {source!r}")
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
