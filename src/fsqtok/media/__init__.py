"""Reading and writing media files in fsqtok's tensor conventions.

Every corrupt, empty, missing or unsupported file raises :class:`MediaError`, one line that
starts with the file name.
"""

from __future__ import annotations

from pathlib import Path

from .audio import AUDIO_EXTENSIONS, decode_audio_bytes, read_audio, write_audio
from .depth import DEPTH_EXTENSIONS, PNG_RANGE_METRES, decode_depth_bytes, depth_from_array, read_depth, write_depth
from .errors import MediaError
from .image import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, decode_image_bytes, open_image, read_image, write_image
from .video import VIDEO_EXTENSIONS, decode_video_bytes, read_video, write_video

# extension -> kind; depth PNGs share ".png" with images, so only ".npy" maps to depth here
EXTENSIONS: dict[str, str] = {
    **{e: "image" for e in IMAGE_EXTENSIONS},
    ".npy": "depth",
    **{e: "audio" for e in AUDIO_EXTENSIONS},
    **{e: "video" for e in VIDEO_EXTENSIONS},
}


def media_kind(path: str | Path) -> str:
    """``"image"``, ``"depth"``, ``"audio"`` or ``"video"`` from the file extension.

    A ``.png`` is an image; read a 16-bit depth PNG with :func:`read_depth` explicitly.
    """
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise MediaError(f"{Path(path).name}: unsupported file type {ext or '(no extension)'}; "
                         f"supported: {', '.join(sorted(EXTENSIONS))}")
    return EXTENSIONS[ext]


__all__ = [
    "EXTENSIONS", "MediaError", "media_kind",
    "read_image", "decode_image_bytes", "write_image", "MAX_IMAGE_PIXELS", "open_image", "read_depth", "decode_depth_bytes", "depth_from_array", "write_depth",
    "read_audio", "decode_audio_bytes", "write_audio", "read_video", "decode_video_bytes", "write_video",
    "DEPTH_EXTENSIONS", "PNG_RANGE_METRES",
]
