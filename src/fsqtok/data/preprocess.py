"""The one preprocessing (decode, resize, crop) that training, evaluation and ``fsqtok tokenize`` share.

A :class:`Preprocess` turns a media file (or a decoded tensor) into one tensor in the
tokenizer's convention, fixed-size where asked, so that batches stack:

* image ``(C, S, S)`` in [-1, 1], ``C`` = ``channels`` (1 grey or 3 RGB, decoded by
  :func:`fsqtok.media.read_image`);
* depth ``(1, S, S)`` in metres, NaN where invalid;
* audio ``(C, N)`` at ``sample_rate`` (``channels=1`` mixes down to mono; ``clip_seconds`` keeps
  the first seconds and zero-pads shorter files);
* video ``(C, T, S, S)`` in [-1, 1] (``num_frames`` frames: read at most that many and repeat
  the last frame of a shorter clip; ``fps`` samples frames at that rate).

**Spatial fitting** (``size``), the same for every field of a paired sample: take the centred
square of side ``min(H, W)`` (or a given :class:`Box`, e.g. a random crop), then resize it to
``size x size``. Interpolation follows the field's kind (:data:`SPATIAL_KINDS`):

* ``image`` / ``video``: bilinear with antialiasing, clamped to [-1, 1];
* ``depth`` and ``label``: nearest neighbour (centre-aligned), so invalid depth (NaN) is
  never blended with valid depth and label ids are never mixed.

Without ``size`` samples keep their own size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import media
from ..media.image import LUMA

SPATIAL_KINDS = ("image", "video", "depth", "label")


class DataError(RuntimeError):
    """A data source that cannot be used at all (missing folder, no files, bad sidecar, too many broken files)."""


@dataclass(frozen=True)
class Box:
    """A crop in source pixels: rows ``top:top+side``, columns ``left:left+side`` (plus a flip)."""

    top: int
    left: int
    side: int
    flip: bool = False

    @staticmethod
    def center(h: int, w: int) -> "Box":
        side = min(h, w)
        return Box((h - side) // 2, (w - side) // 2, side)

    @staticmethod
    def random(h: int, w: int, generator: torch.Generator, min_scale: float = 1.0, flip: bool = False) -> "Box":
        """A random square of ``min_scale``..100% of the short side, at a random place; a coin-flip mirror."""
        side = min(h, w)
        if min_scale < 1.0:
            side = max(1, int(side * (min_scale + (1 - min_scale) * float(torch.rand((), generator=generator)))))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        mirror = flip and bool(torch.rand((), generator=generator) < 0.5)
        return Box(top, left, side, mirror)

    @staticmethod
    def covering(h: int, w: int) -> list["Box"]:
        """Squares of side ``min(h, w)`` that together cover the whole frame: the frame itself when square,
        else ``ceil(long / short)`` squares evenly spaced from one end of the long side to the other.
        Each is what :func:`fit_spatial` fits as the centred square (the training scale), never squashed."""
        side, long = min(h, w), max(h, w)
        n = -(-long // side)
        starts = [round(i * (long - side) / (n - 1)) for i in range(n)] if n > 1 else [0]
        return [Box(0, s, side) if w > h else Box(s, 0, side) for s in starts]


def fit_spatial(x: Tensor, size: int, kind: str, box: Box | None = None) -> Tensor:
    """``(..., H, W)`` -> ``(..., size, size)``: crop ``box`` (default: centred square), resize by ``kind``.

    ``kind`` is one of :data:`SPATIAL_KINDS`; see the module docstring. Label maps keep their
    integer dtype; every other kind is float.
    """
    if kind not in SPATIAL_KINDS:
        raise ValueError(f"kind must be one of {SPATIAL_KINDS}, got {kind!r}")
    h, w = x.shape[-2:]
    box = box or Box.center(h, w)
    if box.top < 0 or box.left < 0 or box.top + box.side > h or box.left + box.side > w:
        raise ValueError(f"crop {box} does not fit a {h}x{w} sample")
    y = x[..., box.top:box.top + box.side, box.left:box.left + box.side]
    if box.flip:
        y = y.flip(-1)
    if box.side != size:
        if kind in ("image", "video"):
            lead = y.shape[:-2]
            flat = y.reshape(-1, 1, box.side, box.side).float()
            flat = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            y = flat.reshape(*lead, size, size)
        else:  # nearest, centre-aligned; works for any dtype and never mixes values
            idx = ((torch.arange(size, dtype=torch.float64) + 0.5) * (box.side / size)).long().clamp_(max=box.side - 1)
            y = y.index_select(-2, idx).index_select(-1, idx)
    if kind in ("image", "video"):
        y = y.clamp(-1, 1)
    return y.contiguous()


def to_grey(x: Tensor, dim: int = 0) -> Tensor:
    """RGB -> grey along ``dim`` with ITU-R 601 weights (the weights sum to 1, so [-1, 1] stays [-1, 1])."""
    w = torch.tensor(LUMA, dtype=x.dtype).reshape(3, *([1] * (x.dim() - dim - 1)))
    return (x * w).sum(dim, keepdim=True)


def match_channels(x: Tensor, channels: int | None, name: str, dim: int = 0) -> Tensor:
    """An image/video tensor with ``channels`` (1 or 3) along ``dim``; ``None`` keeps it."""
    have = x.shape[dim]
    if channels is None or have == channels:
        return x
    if channels == 1 and have == 3:
        return to_grey(x, dim)
    if channels == 3 and have == 1:
        return x.repeat_interleave(3, dim)
    raise media.MediaError(f"{name}: has {have} channel(s), the tokenizer takes {channels}")


@dataclass(frozen=True)
class Preprocess:
    """How one sample is decoded and made fixed-size; part of a shards run's identity (``to_dict``)."""

    modality: str
    size: int | None = None
    clip_seconds: float | None = None
    num_frames: int | None = None
    fps: float | None = None
    sample_rate: int | None = None  # audio: files are resampled to it (the tokenizer's rate)
    channels: int | None = None  # image/video: 1 or 3; audio: 1 mixes down to mono; None keeps the source's

    def to_dict(self) -> dict[str, Any]:
        """The settings that decide the pixels, for a shards run's identity (run.json).

        Unchanged for settings whose pixels are what they were before one preprocessing served
        training and tokenize (no ``size``/``num_frames``, default channels), so such outputs still
        resume; ``fitting: 2`` marks the crop-then-resize fit and the repeated last frames.
        """
        d = asdict(self)
        if d["channels"] in (None, 3 if self.modality in ("image", "video") else None):
            del d["channels"]
        if self.size or self.num_frames:
            d["fitting"] = 2
        return d

    def image(self, x: Tensor, name: str = "image") -> Tensor:
        """``(C, H, W)`` in [-1, 1] -> ``(channels, S, S)``."""
        x = match_channels(x, self.channels, name)
        return fit_spatial(x, self.size, "image") if self.size else x.contiguous()

    def depth(self, x: Tensor) -> Tensor:
        """``(1, H, W)`` metres -> ``(1, S, S)`` (nearest: NaN stays NaN, never blended)."""
        return fit_spatial(x, self.size, "depth") if self.size else x.contiguous()

    def audio(self, wav: Tensor, sr: int) -> tuple[Tensor, dict[str, Any]]:
        """``(C, T)`` at ``sr`` -> ``(C', N)`` at ``sample_rate``; meta ``sample_rate``, ``duration`` (before padding)."""
        if self.sample_rate and sr != self.sample_rate:
            import torchaudio.functional as AF

            wav, sr = AF.resample(wav, sr, self.sample_rate), self.sample_rate
        if self.channels == 1 and wav.shape[0] > 1:
            wav = wav.mean(0, keepdim=True)
        duration = wav.shape[-1] / sr
        if self.clip_seconds:
            n = int(round(self.clip_seconds * sr))
            duration = min(duration, n / sr)
            wav = F.pad(wav[..., :n], (0, max(0, n - wav.shape[-1])))
        return wav.contiguous(), {"sample_rate": int(sr), "duration": float(duration)}

    def video(self, v: Tensor, fps: float, name: str = "video") -> tuple[Tensor, dict[str, Any]]:
        """``(C, T, H, W)`` -> ``(channels, num_frames, S, S)``; meta ``fps``, ``duration`` (before padding)."""
        duration = v.shape[1] / fps
        if self.num_frames and v.shape[1] < self.num_frames:
            v = torch.cat([v, v[:, -1:].expand(-1, self.num_frames - v.shape[1], -1, -1)], 1)
        v = match_channels(v, self.channels, name)
        if self.size:
            v = fit_spatial(v, self.size, "video")
        return v.contiguous(), {"fps": float(fps), "duration": float(duration)}

    def load(self, path: str | Path) -> tuple[Tensor, dict[str, Any]]:
        """Decode one media file with :mod:`fsqtok.media` and fit it; raises :class:`MediaError`."""
        if self.modality == "image":
            return self.image(media.read_image(path, channels=self.channels or 3), Path(path).name), {}
        if self.modality == "depth":
            return self.depth(media.read_depth(path)), {}
        if self.modality == "audio":
            wav, sr = media.read_audio(path, sample_rate=self.sample_rate)
            return self.audio(wav, sr)
        if self.modality == "video":
            v, fps = media.read_video(path, fps=self.fps, num_frames=self.num_frames)
            return self.video(v, fps, Path(path).name)
        raise DataError(f"unknown modality {self.modality!r}")


def extensions(modality: str) -> tuple[str, ...]:
    """The file extensions :mod:`fsqtok.media` reads for ``modality`` (sorted)."""
    table = {"image": media.IMAGE_EXTENSIONS, "depth": media.DEPTH_EXTENSIONS,
             "audio": media.AUDIO_EXTENSIONS, "video": media.VIDEO_EXTENSIONS}
    if modality not in table:
        raise DataError(f"unknown modality {modality!r}; one of {', '.join(table)}")
    return tuple(sorted(table[modality]))
