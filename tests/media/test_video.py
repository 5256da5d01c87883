"""Video decoding: display rotation applied, a bytes decoder equal to the file reader, argument checks."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from fsqtok.media import MediaError, decode_video_bytes, read_video, write_video


def _write_rotated(path, rotation: int) -> np.ndarray:
    """Two 32x48 frames, white in the top-right corner, stored with a display rotation; returns frame 0 (H, W, 3)."""
    frame = np.zeros((32, 48, 3), dtype=np.uint8)
    frame[:8, -8:] = 255
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.height, stream.width, stream.pix_fmt = 32, 48, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(2):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return frame


@pytest.mark.parametrize("rotation,corner", [(0, (0, -1)), (90, (0, 0)), (-90, (-1, -1)), (180, (-1, 0))])
def test_display_rotation_is_applied(tmp_path, rotation, corner):
    _write_rotated(tmp_path / "r.mp4", rotation)
    v, _ = read_video(tmp_path / "r.mp4")
    assert v.shape[1:] == ((2, 32, 48) if rotation in (0, 180) else (2, 48, 32))
    # the white corner, seen counter-clockwise-rotated by `rotation` degrees
    assert v[:, 0, corner[0], corner[1]].min() > 0.8 and v[:, 0].mean() < -0.8


def test_bytes_decoder_matches_the_file_reader(tmp_path):
    write_video(tmp_path / "v.mp4", torch.rand(3, 6, 16, 16) * 2 - 1, fps=6)
    data = (tmp_path / "v.mp4").read_bytes()
    for kwargs in ({}, {"fps": 3}, {"start": 0.5, "num_frames": 2}):
        assert torch.equal(decode_video_bytes(data, **kwargs)[0], read_video(tmp_path / "v.mp4", **kwargs)[0])


def test_bad_arguments(tmp_path):
    write_video(tmp_path / "v.mp4", torch.zeros(3, 2, 16, 16), fps=6)
    with pytest.raises(MediaError, match=r"^v.mp4: fps must be > 0, got nan"):
        read_video(tmp_path / "v.mp4", fps=float("nan"))
    with pytest.raises(MediaError, match=r"^k: empty video data"):
        decode_video_bytes(b"", name="k")
