"""Built-in sample data from real media that ships inside installed packages (no network).

* images: seeded random crops of scikit-image's bundled photos (BSD/CC0; see
  :mod:`~fsqtok.datasets.textures`), split into train and val **by source photo**, so no photo
  feeds both;
* depth: RGB-D pairs with exact per-pixel depth from the ray-caster of :mod:`~fsqtok.datasets.rgbd`
  (a room of real textures and photos, shaded spheres and boxes);
* audio: seeded crops of a real two-speaker conversation (30 s, 16 kHz) that ships inside fsqtok
  (``fsqtok/datasets/assets/speech.flac``: the sample of the ``pyannote.audio`` wheel, MIT, re-encoded
  losslessly; see ``LICENSE-speech.txt`` beside it), split by time: the last 6 s are val;
* video: real generated motion from FFmpeg's lavfi sources through PyAV.

Every function is deterministic for a given ``seed`` and takes well under a second for a
few dozen samples. Images and depth textures need scikit-image: ``pip install 'fsqtok[samples]'``
(``make setup`` does this); the speech needs nothing more.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .rgbd import synthetic_rgbd
from .textures import TRAIN_PHOTOS, VAL_PHOTOS, SampleDataError, photo

SPEECH_FILE = "assets/speech.flac"  # inside this package
SPEECH_VAL_SECONDS = 6.0
VIDEO_SOURCES = ("mandelbrot", "life", "testsrc2", "cellauto")


def _check_split(split: str) -> str:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return split


def sample_images(n: int, size: int = 64, split: str = "train", seed: int = 0) -> Tensor:
    """``n`` real colour crops, float32 ``(n, 3, size, size)`` in [-1, 1].

    Each crop takes a random photo of the split, a random square of 25-100% of its short
    side, a random horizontal flip, and an antialiased resize to ``size``.
    """
    photos = [photo(p) for p in (TRAIN_PHOTOS if _check_split(split) == "train" else VAL_PHOTOS)]
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        img = photos[int(torch.randint(len(photos), (1,), generator=g))]
        h, w = img.shape[1:]
        side = int(min(h, w) * (0.25 + 0.75 * float(torch.rand((), generator=g))))
        top = int(torch.randint(h - side + 1, (1,), generator=g))
        left = int(torch.randint(w - side + 1, (1,), generator=g))
        crop = img[:, top : top + side, left : left + side]
        if bool(torch.rand((), generator=g) < 0.5):
            crop = crop.flip(-1)
        out[i] = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return out.clamp_(-1, 1)


# --------------------------------------------------------------------------- depth


def sample_rgbd(n: int, size: int = 64, split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` rendered RGB-D pairs: rgb ``(n, 3, s, s)`` in [-1, 1] and depth ``(n, 1, s, s)`` in metres (exact).

    The first ``n`` scenes of :func:`fsqtok.datasets.rgbd.synthetic_rgbd` (the one ray-caster); train and val
    are disjoint.
    """
    return synthetic_rgbd(n, size, _check_split(split), seed)


def sample_depth(n: int, size: int = 64, split: str = "train", seed: int = 0) -> Tensor:
    """The depth half of :func:`sample_rgbd`: float32 ``(n, 1, size, size)`` metres."""
    return sample_rgbd(n, size, split, seed)[1]


# --------------------------------------------------------------------------- audio


@lru_cache(maxsize=4)
def _speech(sample_rate: int) -> Tensor:
    """The bundled conversation, mono float32 ``(T,)`` at ``sample_rate``."""
    from ..media import read_audio

    with importlib.resources.as_file(importlib.resources.files(__package__) / SPEECH_FILE) as path:
        if not path.is_file():
            raise SampleDataError(f"{path}: the sample speech is missing from this fsqtok install; reinstall fsqtok")
        wav, _ = read_audio(path, sample_rate=sample_rate)
    return wav.mean(0)


def sample_audio(n: int, seconds: float = 1.0, sample_rate: int = 16000, split: str = "train", seed: int = 0) -> Tensor:
    """``n`` real speech clips, float32 ``(n, 1, T)`` with ``T = seconds * sample_rate``, peak-normalized to 0.9.

    Train clips come from the first 24 s of the conversation, val clips from the last 6 s.
    """
    speech = _speech(sample_rate)
    cut = len(speech) - int(SPEECH_VAL_SECONDS * sample_rate)
    region = speech[:cut] if _check_split(split) == "train" else speech[cut:]
    length = int(round(seconds * sample_rate))
    if length > len(region):
        raise ValueError(f"seconds={seconds} is longer than the {split} speech ({len(region) / sample_rate:.1f} s)")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(region) - length + 1, (n,), generator=g).tolist()
    clips = torch.stack([region[s : s + length] for s in starts])[:, None]
    peak = clips.abs().amax(-1, keepdim=True).clamp_min(1e-4)
    return clips / peak * 0.9


# --------------------------------------------------------------------------- video


def sample_videos(n: int, frames: int = 9, size: int = 64, split: str = "train", seed: int = 0) -> Tensor:
    """``n`` clips of generated motion, float32 ``(n, 3, frames, size, size)`` in [-1, 1].

    Each clip picks a lavfi source and a start offset at random; val uses other offsets.
    """
    import av

    g = torch.Generator().manual_seed(seed * 2 + (0 if _check_split(split) == "train" else 1))
    out = torch.empty(n, 3, frames, size, size)
    for i in range(n):
        source = VIDEO_SOURCES[int(torch.randint(len(VIDEO_SOURCES), (1,), generator=g))]
        skip = int(torch.randint(0, 40, (1,), generator=g))
        spec = f"{source}=s={size}x{size}:r=8" + (f":seed={seed * 1000 + i}" if source in ("life", "cellauto") else "")
        with av.open(spec, format="lavfi") as container:
            decoded = []
            for k, frame in enumerate(container.decode(video=0)):
                if k >= skip:
                    decoded.append(frame.to_ndarray(format="rgb24"))
                if len(decoded) == frames:
                    break
        out[i] = torch.from_numpy(np.stack(decoded)).permute(3, 0, 1, 2).float() / 127.5 - 1
    return out
