"""Video: MP4, WebM, AVI, MKV and MOV through PyAV, as float32 ``(3, T, H, W)`` in [-1, 1].

Frames come out as displayed: a stream's display rotation (phone videos shot upright) is applied.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import Tensor

from .errors import MediaError, check_extension, check_readable, media_errors

VIDEO_EXTENSIONS = {".mp4": "mp4", ".webm": "webm", ".avi": "avi", ".mkv": "matroska", ".mov": "mov"}
WRITE_CODECS = {".mp4": "libx264", ".webm": "libvpx-vp9", ".mkv": "libx264", ".mov": "libx264"}


def read_video(
    path: str | Path, fps: float | None = None, num_frames: int | None = None, start: float = 0.0
) -> tuple[Tensor, float]:
    """Read frames of a video.

    Args:
        path: a video file.
        fps: sample frames at this rate (the frame nearest each tick); ``None`` keeps every frame.
        num_frames: stop after this many frames.
        start: first time (seconds) to read from.
    Returns:
        ``(float32 (3, T, H, W) in [-1, 1], fps of the returned frames)``.
    """
    check_extension(path, VIDEO_EXTENSIONS, "video")
    check_readable(path)
    return _decode(str(path), Path(path).name, fps, num_frames, start)


def decode_video_bytes(data: bytes, fps: float | None = None, num_frames: int | None = None, start: float = 0.0,
                       name: str = "video bytes") -> tuple[Tensor, float]:
    """Decode a video file's bytes exactly as :func:`read_video` reads a file (same arguments and result)."""
    if not data:
        raise MediaError(f"{name}: empty video data")
    return _decode(io.BytesIO(data), name, fps, num_frames, start)


def _decode(source: str | IO[bytes], name: str, fps: float | None, num_frames: int | None,
            start: float) -> tuple[Tensor, float]:
    if fps is not None and not fps > 0:  # also refuses NaN
        raise MediaError(f"{name}: fps must be > 0, got {fps}")
    if num_frames is not None and num_frames < 1:
        raise MediaError(f"{name}: num_frames must be >= 1, got {num_frames}")
    frames: list[np.ndarray] = []
    with media_errors(name, "a valid video file"):
        import av

        with av.open(source) as container:
            if not container.streams.video:
                raise MediaError(f"{name}: no video stream")
            stream = container.streams.video[0]
            native = float(stream.average_rate or stream.guessed_rate or 25)
            step = 1.0 / fps if fps else None
            next_t = start
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(frames) / native
                if t + 0.5 / native < start:
                    continue
                if step is not None:
                    if t + 0.5 / native < next_t:
                        continue
                    next_t += step * max(1, round((t - next_t) / step) + 1)
                frames.append(_displayed(frame.to_ndarray(format="rgb24"), frame.rotation))
                if num_frames is not None and len(frames) >= num_frames:
                    break
    if not frames:
        raise MediaError(f"{name}: no frames at or after {start} s")
    video = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
    return video.contiguous(), float(fps or native)


def _displayed(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """``(H, W, 3)`` as shown: rotated counter-clockwise by the display matrix's angle (a multiple of 90)."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def write_video(path: str | Path, video: Tensor, fps: float, crf: int = 18) -> None:
    """Write ``(3, T, H, W)`` in [-1, 1] as H.264 (MP4/MKV/MOV) or VP9 (WebM), yuv420p.

    yuv420p needs even sizes: an odd height or width is padded by repeating the last
    row or column.
    """
    ext = check_extension(path, WRITE_CODECS, "video output")
    if not isinstance(video, Tensor) or video.ndim != 4 or video.shape[0] != 3 or video.shape[1] == 0:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise MediaError(f"{Path(path).name}: expected a video tensor (3, T, H, W) in [-1, 1], got {shape}")
    if not torch.isfinite(video).all():
        raise MediaError(f"{Path(path).name}: video tensor contains NaN or inf")
    x = video.detach().float().cpu()
    h, w = x.shape[-2:]
    x = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else x
    frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    with media_errors(path, "a writable video file", write=True):
        import av
        from fractions import Fraction

        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(WRITE_CODECS[ext], rate=Fraction(fps).limit_denominator(1001))
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
