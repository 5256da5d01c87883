"""UViM evaluation: the three prediction modes, code prefixes, token accuracy against the oracle's code."""

from __future__ import annotations

import pytest
import torch

from fsqtok.generative.uvim.stage1 import UViMConfig, UViMStage1
from fsqtok.generative.uvim.evaluation import evaluate, predict_batch
from fsqtok.generative.uvim.lm import UViMLM, UViMLMConfig
from fsqtok.metrics import depth_errors

SMALL = dict(image_size=16, width=8, blocks=1, feature_down=1, code_grid=2)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    s1 = UViMStage1(UViMConfig(**SMALL)).eval()
    lm = UViMLM(UViMLMConfig.for_stage1(s1, "s", width=16, encoder_layers=1, decoder_layers=1, heads=2)).eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1, torch.rand(6, 1, 16, 16, generator=g) * 4 + 0.5
    return s1, lm, x, y


def test_prefix_modes_predict_from_the_first_tokens(models):
    s1, lm, x, y = models
    code = s1.encode(x, y).indices.flatten(1)
    pred, idx = predict_batch(s1, x, y, "oracle", code_tokens=2)
    assert torch.equal(idx, code[:, :2]) and torch.equal(pred, s1.predict(x, code[:, :2]))
    pred, idx = predict_batch(s1, x, y, "lm", lm, code_tokens=3)
    assert idx.shape == (6, 3) and torch.equal(pred, s1.predict(x, lm.generate(x)[:, :3]))


def test_evaluate_scores_the_prefix_and_its_token_accuracy(models):
    s1, lm, x, y = models
    batches = [{"image": x[:4], "target": y[:4]}, {"image": x[4:], "target": y[4:]}]
    m = evaluate(s1, batches, "lm", lm, code_tokens=3)
    gen, ref = lm.generate(x, num_tokens=3), s1.encode(x, y).indices.flatten(1)[:, :3]
    assert m["token_accuracy"] == pytest.approx((gen == ref).float().mean().item())
    full = evaluate(s1, batches, "lm", lm)
    assert full["token_accuracy"] == pytest.approx((lm.generate(x) == s1.encode(x, y).indices.flatten(1)).float().mean().item())
    err = depth_errors(s1.predict(x, gen), y)["rmse"]
    assert m["rmse"] == pytest.approx(float(err.mean()), rel=1e-5)  # the mean per-image RMSE of the prefix's predictions


@pytest.mark.parametrize("modes", [(True, True), (True, False), (False, True), (False, False)])
def test_evaluate_runs_in_eval_mode_and_restores_each_models_mode(models, modes):
    """Issue 17 §2.12b: evaluation runs both models in eval mode (dropout, VQ updates off) and gives each its own
    mode back, also when a batch fails: a recipe's training resumes in train mode, a caller's eval model stays so."""
    s1, lm, x, y = models
    seen = []

    def batches(fail: bool):
        seen.append((s1.training, lm.training))
        yield {"image": x[:2], "target": y[:2]}
        seen.append((s1.training, lm.training))
        if fail:
            raise RuntimeError("a broken batch")

    try:
        for fail in (False, True):
            s1.train(modes[0]), lm.train(modes[1])
            if fail:
                with pytest.raises(RuntimeError, match="a broken batch"):
                    evaluate(s1, batches(fail), "lm", lm)
            else:
                evaluate(s1, batches(fail), "lm", lm)
            assert (s1.training, lm.training) == modes
            assert all(state == (False, False) for state in seen)
    finally:
        s1.eval(), lm.eval()
