"""UViM tasks: depth bins and masking, panoptic ids and PQ, colorization metrics and the Fréchet distance."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fsqtok.generative.uvim.metrics import ColorizationMetrics, chroma_features
from fsqtok.generative.uvim.tasks import ColorizationTask, DepthTask, PanopticTask, grey, panoptic_quality_from_stats


@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_depth_bins_round_trip_within_half_a_bin(spacing):
    task = DepthTask(32, 0.5, 20.0, spacing)
    d = torch.linspace(0.5, 19.99, 1000).view(1, 1, 1, 1000)
    bins, valid = task.to_bins(d)
    assert valid.all() and bins.min() == 0 and bins.max() == 31
    pred = task.predict(F.one_hot(bins, 32).permute(0, 3, 1, 2).float())
    if spacing == "log":
        assert ((pred / d).log().abs() <= math.log(40) / 64 + 1e-5).all()  # half a bin in log depth
    else:
        assert ((pred - d).abs() <= 19.5 / 64 + 1e-5).all()


def test_depth_invalid_pixels_get_no_loss_and_no_oracle_signal():
    task = DepthTask(16, 0.5, 20.0)
    d = torch.full((1, 1, 4, 4), 3.0)
    d[0, 0, 0, :] = float("nan")
    d[0, 0, 1, 0], d[0, 0, 1, 1], d[0, 0, 1, 2] = float("inf"), 0.0, -1.0
    logits = torch.randn(1, 16, 4, 4)
    other = logits.clone()
    other[..., 0, :] += torch.randn(16, 4)
    other[..., 1, :3] += torch.randn(16, 3)
    assert torch.equal(task.loss(logits, d), task.loss(other, d))
    assert not torch.equal(task.loss(logits, d), task.loss(logits + torch.randn_like(logits), d))
    enc = task.encode_target(d)
    assert enc.shape == (1, 2, 4, 4) and enc[0, 1].sum() == 16 - 7 and (enc[0, 0][enc[0, 1] == 0] == 0).all()
    m = task.metrics()
    m.update(torch.full_like(d, 3.3), d)
    assert m.compute()["rmse"] == pytest.approx(0.3, abs=1e-5)


def test_panoptic_encoding_loss_prediction_and_pq():
    task = PanopticTask(num_classes=4, max_instances=3)
    y = torch.zeros(2, 2, 8, 8, dtype=torch.long)
    y[:, 0, :4, :4], y[:, 1, :4, :4] = 2, 1
    y[:, 0, 4:, 4:], y[:, 1, 4:, 4:] = 2, 2  # a second instance of class 2
    y[:, 0, 6:, :2] = 3  # a class-3 thing without an instance id
    enc = task.encode_target(y)
    assert enc.shape == (2, 4 + 4, 8, 8) and torch.equal(enc.sum(1), torch.full((2, 8, 8), 2.0))
    logits = enc * 20  # one-hot logits predict the target exactly
    assert torch.equal(task.predict(logits), y)
    assert task.loss(logits, y) < 1e-6
    m = task.metrics()
    m.update(task.predict(logits), y)
    assert m.compute() == {"pq": 100.0, "sq": 100.0, "rq": 100.0}
    wrong = y.clone()
    wrong[:, 1, 4:, 4:] = 1  # the two class-2 instances merged into one segment
    m = task.metrics()
    m.update(wrong, y)
    assert m.compute()["pq"] < 100.0
    with pytest.raises(ValueError, match="instance ids <= 3"):
        task.encode_target(y * 2)
    stuff_instance = y.clone()
    stuff_instance[:, 1] = 1  # background pixels with an instance id: predict() clears them
    assert (task.predict(task.encode_target(stuff_instance) * 20)[:, 1][y[:, 0] == 0] == 0).all()


def test_panoptic_scene_stats_sum_to_the_set_pq():
    task = PanopticTask(num_classes=4, max_instances=3)
    g = torch.Generator().manual_seed(0)
    y = torch.stack([torch.randint(0, 4, (6, 2, 8, 8), generator=g)[:, 0],
                     torch.randint(0, 3, (6, 8, 8), generator=g)], 1)
    y[:, :, :4] = y[:, :, :1, :1]  # large segments, so that some predictions match
    pred = y.clone()
    pred[::2, 1, 6:] = (pred[::2, 1, 6:] + 1) % 3  # some instance ids wrong in half of the scenes
    m = task.metrics()
    m.update(pred, y)
    stats = m.scene_stats(pred, y)
    assert stats.shape == (6, 4, 4) and stats.dtype == torch.float64
    whole = m.compute()
    assert 0 < whole["pq"] < 100
    assert panoptic_quality_from_stats(stats.sum(0)) == pytest.approx(whole, rel=1e-6)  # the set's PQ, from per-scene shares
    sub = task.metrics()
    sub.update(pred[[1, 2, 2, 5]], y[[1, 2, 2, 5]])  # a bootstrap resample: scenes repeat
    assert panoptic_quality_from_stats(stats[[1, 2, 2, 5]].sum(0)) == pytest.approx(sub.compute(), rel=1e-6)


def test_colorization_context_is_grey_and_metrics():
    task = ColorizationTask()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 16, 16, generator=g) * 2 - 1
    assert task.context(x).shape == (16, 1, 16, 16) and torch.allclose(task.context(x), grey(x))
    assert torch.allclose(grey(torch.ones(1, 3, 2, 2)), torch.ones(1, 1, 2, 2))
    m = ColorizationMetrics()
    m.update(x, x)
    same = m.compute()
    assert same["psnr"] == float("inf") and abs(same["fd_chroma"]) < 1e-3
    m = ColorizationMetrics()
    m.update(grey(x).expand(-1, 3, -1, -1), x)  # no colour at all
    out = m.compute()
    assert 5 < out["psnr"] < 40 and out["fd_chroma"] > 0.01
    assert chroma_features()(x).shape == (16, 128)
