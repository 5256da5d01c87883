"""A tokenizer with the VQ baseline bottleneck (for the FSQ-vs-VQ comparison)."""

import warnings

import pytest
import torch

from fsqtok import load_tokenizer
from fsqtok.quantizers import VectorQuantizer
from fsqtok.tokenizers import ImageConfig, ImageTokenizer


def test_vq_tokenizer_round_trip(tmp_path):
    tok = ImageTokenizer(ImageConfig(quantizer="vq")).eval()
    assert isinstance(tok.quantizer, VectorQuantizer)
    assert tok.codebook_size == 1000 and tok.quantizer.dim == 4  # prod / len of the default levels
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    idx = tok.encode(x)
    assert idx.shape == tok.tokens_shape(x.shape) and idx.dtype == torch.int64
    assert tok.decode(idx, input_shape=x.shape).shape == x.shape
    tok.save_pretrained(tmp_path / "vq")
    again = load_tokenizer(tmp_path / "vq")
    assert torch.equal(again.encode(x), idx)


def test_vq_tokenizer_trains_its_codebook():
    tok = ImageTokenizer(ImageConfig(quantizer="vq")).train()
    before = tok.quantizer.embed.clone()
    out = tok(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.quantizer_loss > 0  # commitment loss
    assert not torch.equal(before, tok.quantizer.embed)  # EMA update


def test_vq_dead_code_restarts_are_a_config_field(tmp_path):
    """The strong VQ baseline (EMA + dead-code restarts) is reachable from a tokenizer config and survives save/load."""
    import pytest

    from fsqtok.tokenizers import ConfigError

    tok = ImageTokenizer(ImageConfig(quantizer="vq", vq_dead_code_threshold=1.0))
    assert tok.quantizer.dead_code_threshold == 1.0
    assert ImageTokenizer(ImageConfig(quantizer="vq")).quantizer.dead_code_threshold == 0.0
    tok.save_pretrained(tmp_path / "vq")
    assert load_tokenizer(tmp_path / "vq").quantizer.dead_code_threshold == 1.0
    with pytest.raises(ConfigError, match="vq_dead_code_threshold: needs quantizer='vq'"):
        ImageConfig(vq_dead_code_threshold=1.0)
    with pytest.raises(ConfigError, match="vq_dead_code_threshold: must be >= 0"):
        ImageConfig(quantizer="vq", vq_dead_code_threshold=-1)


def test_vq_levels_only_size_the_codebook():
    """VQ's levels give prod codes of dim len: no FSQ grid rules (no warning for levels < 5, 2 allowed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ImageTokenizer(ImageConfig(quantizer="vq", levels=(8, 8, 4, 4))).codebook_size == 1024
        tok = ImageTokenizer(ImageConfig(quantizer="vq", levels=(2,) * 10))
    assert (tok.codebook_size, tok.quantizer.dim) == (1024, 10)
    with pytest.warns(UserWarning, match="below 5"):
        ImageConfig(levels=(8, 8, 4, 4))
    from fsqtok.tokenizers import ConfigError

    with pytest.raises(ConfigError, match="levels"):
        ImageConfig(levels=(2, 5))
