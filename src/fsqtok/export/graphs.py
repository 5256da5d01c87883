"""The two graphs an export writes, as ``nn.Module`` s that ``torch.onnx.export`` traces.

:class:`EncodeGraph` is ``Tokenizer.encode`` after its input checks: the input mapped to the network
as the tokenizer maps it (depth normalisation and invalid masking, audio mix-down or channel folding,
padding to multiples of the compression), the encoder, and the quantizer's own ``forward`` (FSQ bound,
rounding and integer index packing, every residual stage). :class:`DecodeGraph` is ``Tokenizer.decode``
without its checks and crop: indices -> codes -> decoder -> the modality's convention (metres for
depth), at the padded size. Both reuse the tokenizer's modules and hooks, so the graph does the
tokenizer's arithmetic rather than a copy of it.

A graph cannot raise, so what ``encode`` refuses is handled by the caller
(:class:`~fsqtok.export.OnnxTokenizer` checks the input and the indices' range), and latents that
are not finite give index ``-1`` everywhere in the batch (``encode`` raises
:class:`~fsqtok.quantizers.NonFiniteLatentError` there).

Padding is written without a branch on its amount (a zero-width pad copies), so a traced graph pads
every size as the tokenizer does, rather than only the sizes of the example input.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tokenizers import AudioTokenizer, DepthTokenizer, ImageTokenizer, Tokenizer, VideoTokenizer

# index of a position whose latents were not finite (the batch's indices are all -1 then)
INVALID_INDEX = -1


def _image_input(tok: ImageTokenizer, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """``(B, C, H, W)`` in [-1, 1] -> padded to multiples of ``f`` by repeating edge pixels."""
    f = tok.downsample_factor
    return F.pad(x, (0, -x.shape[-1] % f, 0, -x.shape[-2] % f), mode="replicate"), {}


def _depth_input(tok: DepthTokenizer, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """Metres ``(B, 1, H, W)`` (NaN, inf, <= 0 invalid) -> normalized, 0 where invalid, padded."""
    return _image_input(tok, tok.normalize_depth(x)[0])


def _audio_input(tok: AudioTokenizer, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """``(B, C, T)`` -> mono mix ``(B, 1, T)`` (or ``(B * C, 1, T)``), zero-padded to a multiple of the hop."""
    b, c, t = x.shape
    if tok.config.channels == "independent":
        x = x.reshape(b * c, 1, t)
    else:
        x = x.mean(dim=1, keepdim=True)
    return F.pad(x, (0, -t % tok.hop_length)), {"batch": b, "channels": c}


def _video_input(tok: VideoTokenizer, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """``(B, C, T, H, W)`` -> ``1 + k * tau`` frames (last repeated) and multiples of ``f`` (edges repeated)."""
    f, tau = tok.downsample_factor, tok.temporal_factor
    extra = -(x.shape[2] - 1) % tau
    return F.pad(x, (0, -x.shape[-1] % f, 0, -x.shape[-2] % f, 0, extra), mode="replicate"), {}


NETWORK_INPUT: dict[str, Callable[[Any, Tensor], tuple[Tensor, dict[str, Any]]]] = {
    "image": _image_input, "depth": _depth_input, "audio": _audio_input, "video": _video_input,
}


class EncodeGraph(nn.Module):
    """Media in the tokenizer's convention -> int64 indices, as ``tokenizer.encode`` returns them."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, x: Tensor) -> Tensor:
        tok = self.tokenizer
        x_net, ctx = NETWORK_INPUT[tok.modality](tok, x.to(tok._dtype))
        out = tok.quantizer(tok.encoder(x_net))
        indices = torch.where(out.finite, out.unchecked_indices, INVALID_INDEX)
        return tok._unfold_tokens(indices, ctx)


class DecodeGraph(nn.Module):
    """int64 indices -> media in the tokenizer's convention, at the padded size (the caller crops)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, indices: Tensor) -> Tensor:
        tok = self.tokenizer
        flat, ctx = tok._fold_tokens(indices)
        z_q = tok.quantizer.decode_indices(flat).to(tok._dtype)
        return tok._restore(tok.decoder(z_q), {"input_shape": None, **ctx})
