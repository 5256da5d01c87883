"""fsqtok.metrics.generation: k-NN radii, precision/recall, token usage and the feature cache."""

from __future__ import annotations

import math

import pytest
import torch

from fsqtok import files
from fsqtok.metrics.generation import cached_features, coverage_fraction, knn_radii, precision_recall, token_usage


def test_knn_radii_skip_the_point_itself():
    f = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(f, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(f, k=3).tolist() == [6.0, 5.0, 3.0, 6.0]


def test_precision_recall():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 4, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    # fakes that cover one half of the reals: precise, half the recall at most
    half = real[real[:, 0] > 0.5]
    p, r = precision_recall(real, half.clone())
    assert p == 1.0 and r < 0.6


def test_a_point_on_the_ball_boundary_counts():
    centres = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    assert coverage_fraction(torch.tensor([[4.0], [4.5]]), centres, knn_radii(centres, k=1)) == 0.5


def test_token_usage():
    u = token_usage(torch.tensor([[0, 1, 1], [1, 2, 1]]), 4)
    assert u["usage"] == 0.75 and u["tokens_counted"] == 6 and u["codebook_size"] == 4
    assert u["entropy_bits"] == pytest.approx(-(2 * (1 / 6) * math.log2(1 / 6) + (4 / 6) * math.log2(4 / 6)))
    assert u["uniform_usage_bound"] == pytest.approx(1 - math.exp(-6 / 4))


def test_a_cache_entry_filled_by_two_runs_at_once(tmp_path, monkeypatch):
    """Two evaluations filling the same feature-cache entry at once (the benchmark runs them side by side):
    each writes its own temporary file, so neither rename fails, and the entry holds the features."""
    extractor = torch.nn.Flatten()
    x = torch.rand(4, 3, 2, 2)
    pids, real_save, nested = iter([111, 222]), torch.save, {}
    monkeypatch.setattr(files.os, "getpid", lambda: next(pids))

    def save(obj, path):
        real_save(obj, path)
        if not nested:  # the other run writes and renames the same entry between our save and rename
            nested["run"] = None
            nested["run"] = cached_features(extractor, x, "same key", tmp_path)

    monkeypatch.setattr(torch, "save", save)
    f = cached_features(extractor, x, "same key", tmp_path)
    assert torch.equal(f, x.flatten(1).double()) and torch.equal(nested["run"], f)
    assert [p.suffix for p in tmp_path.iterdir()] == [".pt"]
    assert torch.equal(cached_features(extractor, x, "same key", tmp_path), f)  # read back from the cache
