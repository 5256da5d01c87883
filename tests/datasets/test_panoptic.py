"""fsqtok.datasets.panoptic: exact, canonical labels of Fashion-MNIST scenes, read through the one reader."""

from __future__ import annotations

import pytest
import torch

from fsqtok.data.preprocess import DataError
from fsqtok.datasets.panoptic import MIN_PIXELS, NUM_CLASSES, synthetic_panoptic


def test_panoptic_labels_are_exact_and_canonical():
    rgb, y = synthetic_panoptic(6, 48, "val", seed=0)
    assert rgb.shape == (6, 3, 48, 48) and y.shape == (6, 2, 48, 48) and y.dtype == torch.int64
    sem, inst = y[:, 0], y[:, 1]
    assert torch.equal(sem == 0, inst == 0)  # background is stuff, every thing pixel has an instance
    assert int(sem.max()) < NUM_CLASSES
    for b in range(6):
        ids = [int(i) for i in inst[b].unique() if i > 0]
        assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 1
        first = [int(torch.nonzero((inst[b] == i).flatten())[0]) for i in ids]
        assert first == sorted(first)  # numbered in raster order of their first pixel
        for i in ids:
            m = inst[b] == i
            assert m.sum() >= MIN_PIXELS and sem[b][m].unique().numel() == 1  # one class per instance
    assert torch.equal(synthetic_panoptic(2, 48, "val", seed=0, start=4)[1], y[4:])


def test_panoptic_scenes_read_fashion_mnist_through_the_one_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("FSQTOK_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        synthetic_panoptic(1, 16, "train", seed=0)


def test_panoptic_class_names_are_fashion_mnist_s():
    from fsqtok.datasets import fashion_mnist, panoptic

    assert panoptic.CLASSES == ("background", *fashion_mnist.CLASSES) and NUM_CLASSES == 11
