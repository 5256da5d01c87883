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

GroupNorm is traced as :class:`GraphGroupNorm` (statistics in float64, see there), the one place where
onnxruntime's float32 arithmetic was measured to move tokens.

Padding is written without a branch on its amount (a zero-width pad copies), so a traced graph pads
every size as the tokenizer does, rather than only the sizes of the example input.
"""

from __future__ import annotations

import copy
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
    """``(B, C, T)`` -> mono mix ``(B, 1, T)`` (or ``(B * C, 1, T)``), zero-padded to a multiple of the hop.

    A mean over the (dynamic) channel axis: bit-equal to the tokenizer's left-to-right ``_mix`` for one or
    two channels, within float rounding for more (``_mix``'s loop would freeze the channel count)."""
    b, c, t = x.shape
    if tok._independent:
        x = x.reshape(b * c, 1, t)
    else:
        x = x.mean(dim=1, keepdim=True)
    return F.pad(x, (0, -t % tok.hop_length)), {"batch": b, "channels": c}


def _video_input(tok: VideoTokenizer, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
    """``(B, C, T, H, W)`` -> ``1 + k * tau`` frames (last repeated) and multiples of ``f`` (edges repeated)."""
    f, tau = tok.downsample_factor, tok.temporal_factor
    extra = -(x.shape[2] - 1) % tau
    return F.pad(x, (0, -x.shape[-1] % f, 0, -x.shape[-2] % f, 0, extra), mode="replicate"), {}


class GraphGroupNorm(nn.Module):
    """``nn.GroupNorm`` as the exported graph computes it: group mean and variance in float64, two passes.

    The exporter turns GroupNorm into onnxruntime's InstanceNormalization, whose float32 statistics over
    a whole group (32,768 values in a 128x128 map) are far less exact than PyTorch's: on depth features,
    whose group mean is up to 8.6 standard deviations, the first block's output differed by 1.8e-4
    (2e-6 on photos), enough to flip 3 of 9,216 depth tokens at rounding boundaries. A float32 two-pass
    graph differs as much (onnxruntime's float32 ReduceMean); float64 statistics agree with PyTorch to 5e-7.
    """

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        groups = x.reshape(x.shape[0], self.norm.num_groups, -1).double()
        centred = groups - groups.mean(dim=-1, keepdim=True)
        variance = (centred * centred).mean(dim=-1, keepdim=True)
        y = (centred / torch.sqrt(variance + self.norm.eps)).to(x.dtype).reshape(x.shape)
        affine = (1, -1) + (1,) * (x.ndim - 2)
        return y * self.norm.weight.view(affine) + self.norm.bias.view(affine)


def for_graph(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of ``tokenizer`` whose every ``nn.GroupNorm`` runs as :class:`GraphGroupNorm` (same weights)."""
    tok = copy.deepcopy(tokenizer)
    for module in list(tok.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.GroupNorm):
                setattr(module, name, GraphGroupNorm(child))
    return tok


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
