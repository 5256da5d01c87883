"""The inference path of ``encode``/``decode`` (inference mode, in-place Snake, padding inside the conv,
oneDNN 3D convs, channels-last 2D maps, opt-in ``compile``) gives the training path's tokens on the
built-in real media of every modality, and decode agrees with the training forward to float tolerance.

The training path is the forward pass with autograd on, in eval mode: the reference every other
fast form is pinned to. A fusion that rounds differently may move at most 1 token in 10^5
(``MAX_MOVED``); on these inputs that allows none.
"""

import pytest
import torch

from fsqtok.datasets import samples
from fsqtok.tokenizers import AudioTokenizer, DepthTokenizer, ImageTokenizer, VideoTokenizer

MAX_MOVED = 1e-5

MEDIA = {
    "photos": (ImageTokenizer, lambda: samples.sample_images(4, 64)),
    "rendered depth": (DepthTokenizer, lambda: samples.sample_depth(4, 64)),
    "speech": (AudioTokenizer, lambda: samples.sample_audio(2, 2.0)),
    "lavfi video": (VideoTokenizer, lambda: samples.sample_videos(2, 9, 32)),
}


def _build(name):
    cls, media = MEDIA[name]
    torch.manual_seed(0)
    return cls().eval(), media()


def _training_path(tok, x):
    """Tokens and reconstruction of the forward pass with autograd on (the training path)."""
    with torch.enable_grad():
        out = tok(x)
    return out.unfold(out.quantizer_output.indices), out.reconstruction.detach()


def assert_same_tokens(fast, ref):
    assert fast.shape == ref.shape and fast.dtype == ref.dtype == torch.int64
    moved = int((fast != ref).sum())
    assert moved <= MAX_MOVED * ref.numel(), f"{moved} of {ref.numel()} tokens moved"


@pytest.mark.parametrize("name", list(MEDIA))
def test_encode_gives_the_training_paths_tokens_on_real_media(name):
    tok, x = _build(name)
    ref, recon = _training_path(tok, x)
    fast = tok.encode(x)
    assert_same_tokens(fast, ref)
    assert_same_tokens(torch.cat([tok.encode(x[i : i + 1]) for i in range(len(x))]), ref)  # batch 1: other kernels
    torch.testing.assert_close(tok.decode(fast, input_shape=x.shape), recon, rtol=1e-4, atol=1e-4)


def test_encoded_tokens_are_ordinary_tensors():
    tok, x = _build("photos")
    idx = tok.encode(x[:1])
    assert not idx.is_inference() and not idx.requires_grad
    idx[0, 0, 0] = 0  # callers may edit tokens in place


@pytest.mark.slow
def test_compiled_tokens_are_eager_tokens():
    tok, x = _build("speech")
    eager, decoded = tok.encode(x), tok.decode(tok.encode(x))
    assert tok.compile() is tok
    assert_same_tokens(tok.encode(x), eager)
    torch.testing.assert_close(tok.decode(eager), decoded, rtol=1e-4, atol=1e-5)
