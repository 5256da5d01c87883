"""The traced modules in PyTorch itself: they must be encode/decode, input mapping included."""

from __future__ import annotations

import pytest
import torch

from fsqtok.export.exporter import _example_input
from fsqtok.export.graphs import INVALID_INDEX, DecodeGraph, EncodeGraph, GraphGroupNorm, for_graph
from onnx_checks import CASES, media


@pytest.mark.parametrize("name", list(CASES))
def test_encode_graph_is_encode_and_decode_graph_is_decode(name):
    """Exact, except audio decoding: ``AudioTokenizer.decode`` runs fixed blocks with carried state (the
    streaming contract) where the graph runs the decoder in one call, so the two agree to float rounding."""
    tok = CASES[name][0]().eval()
    for x in [*media(name), _example_input(tok)]:
        indices = tok.encode(x)
        with torch.no_grad():
            assert torch.equal(EncodeGraph(tok)(x), indices)
            y, expected = DecodeGraph(tok)(indices), tok.decode(indices)
            if name.startswith("audio"):
                torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)
            else:
                assert torch.equal(y, expected)


def test_non_finite_latents_give_the_invalid_index():
    tok = CASES["image"][0]().eval()
    with torch.no_grad():
        tok.encoder.conv_out.bias[0] = float("nan")
        indices = EncodeGraph(tok)(media("image")[0])
    assert indices.dtype == torch.int64 and bool((indices == INVALID_INDEX).all())


def test_graph_group_norm_is_group_norm_with_exact_statistics():
    norm = torch.nn.GroupNorm(4, 8, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    for x in (torch.randn(2, 8, 5, 7, 3), 5 + 0.01 * torch.randn(2, 8, 64, 64)):  # also a mean of 500 spreads
        exact = torch.nn.functional.group_norm(x.double(), 4, norm.weight.double(), norm.bias.double(), 1e-6)
        with torch.no_grad():
            y = GraphGroupNorm(norm)(x)
            torch.testing.assert_close(y, norm(x), atol=1e-3, rtol=1e-3)
        assert y.dtype == torch.float32 and float((y.double() - exact).abs().max()) < 1e-5


def test_for_graph_wraps_every_group_norm_and_keeps_the_weights():
    tok = CASES["video"][0]().eval()
    traced = for_graph(tok)
    norms = sum(isinstance(m, torch.nn.GroupNorm) for m in tok.modules())
    assert norms > 0 and sum(isinstance(m, GraphGroupNorm) for m in traced.modules()) == norms
    assert all(isinstance(m, GraphGroupNorm) for m in traced.modules()
               if any(isinstance(c, torch.nn.GroupNorm) for c in m.children()))
    assert [p.tolist() for p in traced.parameters()] == [p.tolist() for p in tok.parameters()]
