"""fsqtok.datasets.real_depth: the motorcycle and castel depth frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsqtok.datasets.real_depth import motorcycle_depth, read_castel_depth, real_depth_frames


def test_motorcycle_disparity_to_depth():
    d = np.array([0.0, 10.0, np.inf])
    z = motorcycle_depth(d)
    assert z[0] == pytest.approx(994.978 * 193.001 / 31.086 / 1000)
    assert z[1] == pytest.approx(994.978 * 193.001 / 41.086 / 1000)
    assert np.isinf(z[2])


def test_castel_depth_reader(tmp_path):
    raw = np.array([2, 3], "<u4").tobytes() + np.array([0, 1, 8000, 2, 3, 4], "<u2").tobytes()
    (tmp_path / "d.bin").write_bytes(raw)
    z = read_castel_depth(tmp_path / "d.bin")
    assert z.shape == (2, 3) and np.isinf(z[0, 0]) and z[0, 2] == pytest.approx(8000 * 0.000124986647)
    (tmp_path / "bad.bin").write_bytes(raw[:-2])
    with pytest.raises(ValueError, match="header says 2x3"):
        read_castel_depth(tmp_path / "bad.bin")


@pytest.mark.parametrize("source,count,lo,hi", [("motorcycle", 1, 1.5, 6.0), ("castel", 3, 0.1, 1.0)])
def test_real_depth_frames(source, count, lo, hi):
    x, d = real_depth_frames(source, 32)
    assert x.shape == (count, 3, 32, 32) and d.shape == (count, 1, 32, 32)
    valid = torch.isfinite(d)
    assert valid.float().mean() > 0.5 and lo < d[valid].min() and d[valid].max() < hi


def test_castel_frames_come_from_the_environment_or_a_one_line_error(tmp_path, monkeypatch):
    from fsqtok.datasets.real_depth import RealDepthError

    monkeypatch.setenv("FSQTOK_CASTEL_DIR", str(tmp_path))
    with pytest.raises(RealDepthError, match=f"{tmp_path}: no castel frames.*apt-get install visp-images-data"):
        real_depth_frames("castel", 16)
