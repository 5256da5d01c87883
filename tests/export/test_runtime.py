"""OnnxTokenizer against PyTorch on real media: every modality, two input sizes each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnx_checks import CASES, media

from fsqtok.export.agreement import agreement

NAMES = list(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_indices_equal_pytorch_at_two_sizes(exported, name):
    tok, onnx_tok, _, _ = exported(name)
    sizes = set()
    for x in media(name):
        got = onnx_tok.encode(x)
        assert got.shape == tok.tokens_shape(x.shape)
        fraction, unexplained = agreement(tok, x, got)
        assert unexplained == 0, f"{name} {tuple(x.shape)}: {fraction:.6f} equal, {unexplained} not at a boundary"
        assert fraction >= 0.99
        sizes.add(tuple(got.shape))
    assert len(sizes) == 2  # two token grids: a size frozen by tracing cannot pass


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_pytorch(exported, name):
    tok, onnx_tok, _, _ = exported(name)
    for x in media(name):
        indices = tok.encode(x)
        expected = tok.decode(indices, input_shape=x.shape)
        got = onnx_tok.decode(indices, input_shape=x.shape)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        padded = onnx_tok.decode(indices)  # without input_shape: the padded size, as Tokenizer.decode
        assert padded.shape == tok.decode(indices).shape


@pytest.mark.parametrize("name", ["audio", "audio_independent"])
def test_decode_a_stage_prefix(exported, name):
    tok, onnx_tok, _, _ = exported(name)
    x = media(name)[1]
    indices = tok.encode(x)
    for k in range(1, tok.num_stages + 1):
        expected = tok.decode(indices, num_stages=k)
        torch.testing.assert_close(onnx_tok.decode(indices, num_stages=k), expected, atol=1e-5, rtol=1e-5)
        axis = 1 + tok._extra_token_axes
        prefix = indices.narrow(axis, 0, k)  # the prefix alone decodes the same
        torch.testing.assert_close(onnx_tok.decode(prefix), expected, atol=1e-5, rtol=1e-5)


def test_numpy_in_tensor_out(exported):
    tok, onnx_tok, _, _ = exported("image")
    x = media("image")[0]
    indices = onnx_tok.encode(x.numpy())
    assert isinstance(indices, torch.Tensor) and indices.dtype == torch.int64
    assert torch.equal(indices, onnx_tok.encode(x))
    y = onnx_tok.decode(indices.numpy().astype(np.int32), input_shape=x.shape)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape


def test_reports_like_the_tokenizer(exported):
    tok, onnx_tok, _, source = exported("audio_independent")
    assert onnx_tok.modality == "audio" and onnx_tok.num_stages == 2 and onnx_tok.codebook_size == tok.codebook_size
    assert onnx_tok.weights_hash() == source.weights_hash()
    assert onnx_tok.tokens_shape((3, 2, 1000)) == tok.tokens_shape((3, 2, 1000)) == (3, 2, 2, 125)
    assert onnx_tok.config.sample_rate == 16000


def test_refuses_what_the_tokenizer_refuses(exported):
    tok, onnx_tok, _, _ = exported("image")
    x = media("image")[0]
    for bad in (x * 127.5 + 127.5, x[:, :2], x[0], x.long()):
        with pytest.raises((TypeError, ValueError)) as ort_error:
            onnx_tok.encode(bad)
        with pytest.raises((TypeError, ValueError)) as torch_error:
            tok.encode(bad)
        assert str(ort_error.value) == str(torch_error.value)
    with pytest.raises(TypeError, match="torch.Tensor or a numpy array"):
        onnx_tok.encode([[0.0]])
    indices = tok.encode(x)
    bad = indices.clone()
    bad[0, 0, 0] = 1000
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 1000\), got min \d+, max 1000"):
        onnx_tok.decode(bad)
    with pytest.raises(ValueError, match="do not come from an input of shape"):
        onnx_tok.decode(indices, input_shape=(2, 3, 64, 64))


def test_depth_keeps_invalid_pixels_invalid_not_an_error(exported):
    tok, onnx_tok, _, _ = exported("depth")
    x = media("depth")[0]
    assert bool(torch.isnan(x).any()) and bool((x == 0).any())
    assert torch.equal(onnx_tok.encode(x), tok.encode(x))
