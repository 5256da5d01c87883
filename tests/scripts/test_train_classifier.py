"""scripts/train_classifier.py on tiny synthetic Fashion-MNIST files (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from script_utils import load_path, load_script

from fsqtok.metrics.classifier import load_classifier, weights_sha256

ROOT = Path(__file__).resolve().parents[2]


write_idx = load_path("fsqtok_test_fashion_mnist", ROOT / "tests" / "datasets" / "test_fashion_mnist.py").write_idx
train_classifier = load_script("train_classifier")


def fake_fashion_mnist(folder: Path, n_train: int = 96, n_test: int = 32) -> None:
    """Two separable classes: bright top half (class 2) or bright bottom half (class 7), plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.choice([2, 7], n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, lb in enumerate(labels):
            images[i, :14] += np.uint8(190 * (lb == 2))
            images[i, 14:] += np.uint8(190 * (lb == 7))
        write_idx(folder, split, images, labels)


def test_trains_saves_and_loads(tmp_path, capsys):
    fake_fashion_mnist(tmp_path / "raw")
    out = tmp_path / "clf"
    code = train_classifier.main(["--output-dir", str(out), "--data", str(tmp_path / "raw"), "--epochs", "3",
                                  "--num-train", "96", "--batch-size", "16", "--lr", "3e-3"])
    assert code == 0
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["num_train"] == 96 and meta["test_items"] == 32
    assert meta["test_accuracy"] == 1.0  # separable toy classes
    model, meta2 = load_classifier(out)
    assert meta2["weights_sha256"] == weights_sha256(model) == meta["weights_sha256"]
    x = torch.rand(4, 3, 28, 28) * 2 - 1
    assert model.features(x).shape == (4, 128)
    assert torch.allclose(model(x), model(x.mean(1, keepdim=True)))  # RGB is averaged to grey
    assert "test accuracy 1.0000" in capsys.readouterr().out


def test_bad_input_and_arguments(tmp_path, capsys):
    assert train_classifier.main(["--output-dir", str(tmp_path / "o"), "--data", str(tmp_path)]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train_classifier.main(["--output-dir", str(tmp_path / "o"), "--epochs", "0"])
    assert e.value.code == 2
