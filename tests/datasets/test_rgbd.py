"""fsqtok.datasets.rgbd: the scale-ambiguous ray-caster (the scale shows only in the metric floor tiles)."""

from __future__ import annotations

import pytest
import torch

from fsqtok.datasets import rgbd


def _render_at(monkeypatch, scale: float, tile: float):
    monkeypatch.setattr(rgbd, "SCALE_RANGE", (scale, scale))
    monkeypatch.setattr(rgbd, "TILE_RANGE", (tile, tile))
    return rgbd.synthetic_rgbd(3, 32, "train", seed=5)


def test_rgbd_scale_is_invisible_but_for_the_metric_floor_tiles(monkeypatch):
    rgb1, d1 = _render_at(monkeypatch, 1.0, 0.5)
    rgb2, d2 = _render_at(monkeypatch, 2.5, 1.25)  # tiles scaled with the scene: no cue left
    assert torch.equal(rgb1, rgb2)  # the same picture ...
    assert torch.allclose(d2, 2.5 * d1)  # ... at another metric scale


def test_rgbd_floor_tiles_reveal_the_scale_and_nothing_else_does(monkeypatch):
    rgb1, d1 = _render_at(monkeypatch, 1.0, 0.5)
    rgb2, d2 = _render_at(monkeypatch, 2.5, 0.5)  # the same metric tiles in a 2.5x bigger scene
    assert torch.allclose(d2, 2.5 * d1)
    changed = (rgb1 != rgb2).any(1)  # (3, 32, 32)
    assert changed.sum() > 30  # the tile pattern differs ...
    assert not changed[:, :16].any()  # ... and only below the horizon (the camera looks level): on the floor


def test_rgbd_is_deterministic_finite_and_varied():
    rgb, d = rgbd.synthetic_rgbd(8, 32, "val", seed=1)
    rgb2, d2 = rgbd.synthetic_rgbd(2, 32, "val", seed=1, start=6)
    assert torch.equal(rgb[6:], rgb2) and torch.equal(d[6:], d2)
    assert rgb.shape == (8, 3, 32, 32) and rgb.min() >= -1 and rgb.max() <= 1
    assert torch.isfinite(d).all() and d.min() > 0.1 and d.max() < 30
    scales = d.flatten(1).median(1).values
    assert scales.max() / scales.min() > 2  # scenes at different metric scales
    assert not torch.equal(rgbd.synthetic_rgbd(1, 32, "train", seed=1)[0], rgb[:1])  # splits differ
    with pytest.raises(ValueError, match="split"):
        rgbd.synthetic_rgbd(1, 32, "dev")
