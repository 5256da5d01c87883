"""fsqtok.metrics.classifier: the Fashion-MNIST classifier saves, loads with its hash, and refuses wrong input."""

import json

import pytest
import torch

from fsqtok.metrics.classifier import (META, LeNet, classifier_features, load_classifier, save_classifier,
                                       weights_sha256)


def test_save_and_load_keep_the_weights_and_their_hash(tmp_path):
    model = LeNet().eval()
    meta = save_classifier(model, tmp_path / "clf", {"test_accuracy": 0.5})
    assert json.loads((tmp_path / "clf" / META).read_text()) == meta
    assert meta["weights_sha256"] == weights_sha256(model) and meta["arch"] == model.arch
    loaded, meta2 = load_classifier(tmp_path / "clf")
    assert meta2 == meta and weights_sha256(loaded) == meta["weights_sha256"] and not loaded.training
    x = torch.rand(2, 3, 28, 28) * 2 - 1
    features = classifier_features(loaded)
    assert torch.equal(features(x), loaded.features(x)) and features(x).shape == (2, 128)


def test_missing_folder_and_wrong_input_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train one with scripts/train_classifier.py"):
        load_classifier(tmp_path)
    with pytest.raises(ValueError, match=r"\(B, 1 or 3, 28, 28\)"):
        LeNet()(torch.zeros(1, 1, 32, 32))
