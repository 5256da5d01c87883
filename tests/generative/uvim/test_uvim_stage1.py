"""UViM stage I: shapes, code dropout, the no-code flag, and save/load through fsqtok.hub."""

from __future__ import annotations

import pytest
import torch

from fsqtok.generative.uvim.stage1 import UViMConfig, UViMStage1, build_quantizer
from fsqtok.quantizers import FSQ, SplittingVectorQuantizer, VectorQuantizer
from fsqtok.hub import ConfigError, load_pretrained

SMALL = dict(image_size=32, width=16, blocks=1, feature_down=2, code_grid=4)


def batch(task: str, b: int = 2, s: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, s, s, generator=g) * 2 - 1
    if task == "depth":
        y = torch.rand(b, 1, s, s, generator=g) * 5 + 0.5
    elif task == "panoptic":
        y = torch.stack([torch.randint(0, 11, (b, s, s), generator=g), torch.randint(0, 9, (b, s, s), generator=g)], 1)
    else:
        y = x
    return x, y


@pytest.mark.parametrize("task,out_channels", [("depth", 64), ("colorization", 3), ("panoptic", 11 + 9)])
@pytest.mark.parametrize("quantizer", ["fsq", "vq", "vq_split"])
def test_oracle_and_base_shapes(task, out_channels, quantizer):
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(task=task, quantizer=quantizer, **SMALL))
    x, y = batch(task)
    q = m.encode(x, y)
    assert q.indices.shape == (2, 4, 4) and q.indices.dtype == torch.int64
    assert q.z_q.shape == (2, 16, 4, 4)
    assert int(q.indices.max()) < m.codebook_size == (4375 if quantizer == "fsq" else 4096)
    logits = m.decode(x, q.z_q)
    assert logits.shape == (2, out_channels, 32, 32)
    loss, aux = m.loss(x, y)
    loss.backward()
    assert torch.isfinite(loss) and aux["out"].logits.shape == logits.shape
    assert m.oracle_head[-1].weight.grad.abs().sum() > 0  # the task loss reaches the oracle through the bottleneck
    m.eval()
    pred, idx = m.oracle_predict(x, y)
    assert pred.shape == (2, {"depth": 1, "colorization": 3, "panoptic": 2}[task], 32, 32)
    assert torch.equal(idx, m.encode(x, y).indices)


@pytest.mark.parametrize("mode", ["random", "prefix"])
def test_code_dropout_keeps_a_uniform_fraction(mode):
    m = UViMStage1(UViMConfig(code_dropout=mode, **SMALL))
    torch.manual_seed(0)
    keep = m.code_dropout_mask(4000, torch.device("cpu")).view(4000, 16)
    frac = keep.float().mean(1)
    assert abs(frac.mean().item() - 0.5) < 0.02  # u ~ U(0, 1) -> half the tokens on average
    assert (frac == 0).any() and (frac == 1).any()  # sometimes nothing, sometimes everything
    counts = torch.bincount(keep.sum(1), minlength=17).float() / 4000
    assert counts.min() > 0.03  # every count 0..16 occurs (about 1/17 each)
    if mode == "prefix":  # the kept tokens are the first ones in raster order
        assert torch.equal(keep, torch.arange(16)[None] < keep.sum(1, keepdim=True))
    else:  # any position can be dropped while a later one is kept
        assert not torch.equal(keep, torch.arange(16)[None] < keep.sum(1, keepdim=True))
        assert (keep.float().mean(0) - 0.5).abs().max() < 0.05


def test_dropped_tokens_do_not_reach_the_base_model():
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(**SMALL)).eval()
    x, y = batch("depth")
    z = m.encode(x, y).z_q
    keep = torch.ones(2, 4, 4, dtype=torch.bool)
    keep[:, 1:3, 2] = False
    z2 = z.clone()
    z2[:, :, 1:3, 2] += 5.0
    assert torch.equal(m.decode(x, z, keep), m.decode(x, z2, keep))
    assert not torch.allclose(m.decode(x, z), m.decode(x, z2))  # kept, the same change matters
    # a zero code vector (the FSQ centre code) is a real code, distinct from a dropped token
    zero = torch.zeros_like(z)
    assert not torch.allclose(m.decode(x, zero), m.decode(x, zero, torch.zeros_like(keep)))
    assert torch.equal(m.decode(x, None), m.decode(x, z, torch.zeros_like(keep)))


def test_training_mode_applies_code_dropout_and_eval_does_not():
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(**SMALL))
    x, y = batch("depth", b=64)
    assert 0.3 < m(x, y).keep.float().mean() < 0.7
    m.eval()
    assert m(x, y).keep.all()
    m2 = UViMStage1(UViMConfig(code_dropout="none", **SMALL))
    assert m2(x, y).keep.all()


def test_no_code_flag_ignores_the_target():
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(no_code=True, **SMALL))
    x, y = batch("depth")
    out = m(x, y)
    assert out.indices is None and out.quant is None and not out.keep.any()
    assert torch.equal(out.logits, m(x, y * 3).logits)
    loss, aux = m.loss(x, y)
    assert aux["quant"] == 0
    m.eval()
    assert torch.equal(m.predict(x, torch.zeros(2, 16, dtype=torch.long)), m.predict(x))


def test_predict_from_indices_equals_oracle_prediction():
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(**SMALL)).eval()
    x, y = batch("depth")
    pred, idx = m.oracle_predict(x, y)
    assert torch.equal(m.predict(x, idx.flatten(1)), pred)


def test_a_code_prefix_drops_the_tokens_after_it():
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(**SMALL)).eval()
    x, y = batch("depth")
    idx = m.oracle_predict(x, y)[1].flatten(1)
    assert torch.equal(m.predict(x, idx[:, :0]), m.predict(x))  # an empty prefix is no code at all
    assert torch.equal(m.predict(x, idx[:, :16]), m.predict(x, idx))
    keep = m.prefix_keep(2, 5, x.device)
    assert keep.flatten(1).sum(1).tolist() == [5, 5] and keep.flatten(1)[:, :5].all()  # the first 5 in raster order
    assert torch.equal(m.predict(x, idx[:, :5]), m.task.predict(m.decode(x, m.codes_from_indices(idx), keep)))
    with pytest.raises(ValueError, match="0..16 tokens"):
        m.prefix_keep(2, 17, x.device)


def test_bad_configs_and_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="quantizer"):
        UViMConfig(quantizer="rvq")
    with pytest.raises(ConfigError, match="image_size"):
        UViMConfig(image_size=48, code_grid=4)  # 48/4 = 12 = 4 * 3, not a power of two
    with pytest.raises(ConfigError, match="task"):
        UViMConfig(task="normals")
    m = UViMStage1(UViMConfig(**SMALL))
    with pytest.raises(ValueError, match=r"\(B, C, 32, 32\)"):
        m.encode(torch.zeros(1, 3, 16, 16), torch.ones(1, 1, 16, 16))


@pytest.mark.parametrize("quantizer", ["fsq", "vq_split"])
def test_save_load_round_trip(tmp_path, quantizer):
    torch.manual_seed(0)
    m = UViMStage1(UViMConfig(quantizer=quantizer, **SMALL))
    x, y = batch("depth")
    m.train()
    m(x, y)  # moves VQ EMA buffers away from their initial values
    m.eval()
    m.save_pretrained(tmp_path / "s1")
    loaded = load_pretrained(tmp_path / "s1")
    assert type(loaded) is UViMStage1 and loaded.config == m.config
    assert loaded.weights_hash() == m.weights_hash()
    assert torch.equal(loaded.oracle_predict(x, y)[0], m.oracle_predict(x, y)[0])


def test_build_quantizer():
    assert isinstance(build_quantizer("fsq", 16, levels=(7, 5, 5, 5, 5), codebook_size=8, dim=4, ema_decay=0.99,
                                      commitment_weight=0.25, split_threshold=0.1), FSQ)
    vq = build_quantizer("vq", 16, levels=(5,), codebook_size=8, dim=4, ema_decay=0.99, commitment_weight=0.25,
                         split_threshold=0.1)
    assert type(vq) is VectorQuantizer and vq.codebook_size == 8
    with pytest.raises(ValueError, match="ema_decay"):
        SplittingVectorQuantizer(8, 4, ema_decay=None)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        build_quantizer("rvq", 16, levels=(5,), codebook_size=8, dim=4, ema_decay=0.99, commitment_weight=0.25,
                        split_threshold=0.1)
