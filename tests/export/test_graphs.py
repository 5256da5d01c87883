"""The traced modules in PyTorch itself: they must be encode/decode, input mapping included."""

from __future__ import annotations

import pytest
import torch

from fsqtok.export.exporter import _example_input
from fsqtok.export.graphs import INVALID_INDEX, DecodeGraph, EncodeGraph
from onnx_checks import CASES, media


@pytest.mark.parametrize("name", list(CASES))
def test_encode_graph_is_encode_and_decode_graph_is_decode(name):
    tok = CASES[name][0]().eval()
    for x in [*media(name), _example_input(tok)]:
        indices = tok.encode(x)
        with torch.no_grad():
            assert torch.equal(EncodeGraph(tok)(x), indices)
            assert torch.equal(DecodeGraph(tok)(indices), tok.decode(indices))


def test_non_finite_latents_give_the_invalid_index():
    tok = CASES["image"][0]().eval()
    with torch.no_grad():
        tok.encoder.conv_out.bias[0] = float("nan")
        indices = EncodeGraph(tok)(media("image")[0])
    assert indices.dtype == torch.int64 and bool((indices == INVALID_INDEX).all())
