"""Depth files: one convention (16-bit PNG millimetres with 0 = invalid; .npy float metres), saturation
instead of failure for far PNG depth, and a bytes decoder that agrees with the file reader."""

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from fsqtok import media
from fsqtok.media import MediaError, decode_depth_bytes, depth_from_array, read_depth, write_depth
from fsqtok.media import depth as depth_module


@pytest.fixture(autouse=True)
def fresh_once_flag(monkeypatch):
    monkeypatch.setattr(depth_module, "_saturation_reported", False)


def _depth(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, -1)


def test_png_and_npy_round_trip(tmp_path):
    d = torch.rand(1, 6, 7) * 10 + 0.5
    d[0, 0, 0] = float("nan")
    d[0, 1, 1] = 0.0
    write_depth(tmp_path / "d.png", d)
    assert Image.open(tmp_path / "d.png").mode == "I;16"
    r = read_depth(tmp_path / "d.png")
    assert torch.isnan(r[0, 0, 0]) and torch.isnan(r[0, 1, 1])
    valid = torch.isfinite(r)
    assert valid.sum() == 40 and (r[valid] - d[valid]).abs().max() <= 0.0005 + 1e-6  # millimetre steps
    write_depth(tmp_path / "d.npy", d)
    r = read_depth(tmp_path / "d.npy")
    assert torch.equal(torch.isnan(r), ~valid) and torch.equal(r[valid], d[valid])
    for name in ("d.png", "d.npy"):  # the bytes decoder is the same reader
        b = decode_depth_bytes((tmp_path / name).read_bytes(), name=name)
        assert torch.equal(b.isnan(), read_depth(tmp_path / name).isnan()) and torch.equal(b[valid], read_depth(tmp_path / name)[valid])


def test_far_and_near_png_depth_saturates_with_one_warning_line(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fsqtok.media.depth")
    write_depth(tmp_path / "far.png", _depth(70.0, 100.0, 0.0002, 5.0, float("nan")))  # issue 10.15: was an error
    r = read_depth(tmp_path / "far.png")[0, 0]
    assert r[:4].tolist() == pytest.approx([65.535, 65.535, 0.001, 5.0]) and torch.isnan(r[4])  # valid stays valid
    assert np.asarray(Image.open(tmp_path / "far.png")).tolist() == [[65535, 65535, 1, 5000, 0]]
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert caplog.records[0].getMessage().startswith("far.png: 3 depth pixel(s) in [0.0002, 100] m saturated")
    write_depth(tmp_path / "far2.png", _depth(80.0))  # once per process
    assert len(caplog.records) == 1
    write_depth(tmp_path / "far.npy", _depth(80.0))  # .npy keeps any range
    assert read_depth(tmp_path / "far.npy").item() == 80.0


def test_in_range_png_does_not_warn(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fsqtok.media.depth")
    write_depth(tmp_path / "ok.png", _depth(*media.PNG_RANGE_METRES))
    assert caplog.records == [] and read_depth(tmp_path / "ok.png")[0, 0].tolist() == pytest.approx([0.001, 65.535])


def test_float_images_are_metres_and_8bit_is_refused():
    buf = io.BytesIO()
    Image.fromarray(np.array([[1.5, -1.0]], dtype=np.float32)).save(buf, format="TIFF")
    d = decode_depth_bytes(buf.getvalue())
    assert d[0, 0, 0].item() == 1.5 and torch.isnan(d[0, 0, 1])
    buf = io.BytesIO()
    Image.new("L", (2, 2)).save(buf, format="PNG")
    with pytest.raises(MediaError, match=r"^row 7: not a 16-bit depth PNG \(mode L\)"):
        decode_depth_bytes(buf.getvalue(), name="row 7")
    with pytest.raises(MediaError, match=r"^row 7: empty depth data"):
        decode_depth_bytes(b"", name="row 7")


def test_huge_declared_depth_png_is_refused(tmp_path, png_declaring):
    (tmp_path / "bomb.png").write_bytes(png_declaring(10000, 10000))
    with pytest.raises(MediaError, match=r"^bomb.png: declares 10000x10000 = 100000000 pixels, over the limit"):
        read_depth(tmp_path / "bomb.png")


def test_depth_from_array_marks_invalid_and_checks_shape():
    d = depth_from_array(np.array([[[2.0, 0.0, np.inf, -3.0]]]))  # a one-row map stays (1, 1, W)
    assert depth_from_array(np.ones((3, 2, 1))).shape == (1, 3, 2)
    assert d.shape == (1, 1, 4) and d[0, 0, 0] == 2.0 and d[0, 0, 1:].isnan().all()
    with pytest.raises(MediaError, match=r"^a: expected a 2-D depth map, got shape \(2, 2, 2\)"):
        depth_from_array(np.zeros((2, 2, 2)), name="a")
    with pytest.raises(MediaError, match=r"^x.png: expected a depth map"):
        write_depth("x.png", torch.zeros(2, 2, 2))
