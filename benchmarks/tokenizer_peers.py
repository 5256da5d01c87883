"""The peers of :mod:`bench_tokenizers`, each built at the size of fsqtok's default tokenizer of its modality.

A :class:`Model` is what the benchmark times and counts: ``encode()`` (input -> codes) and ``decode()``
(codes -> output) on a fixed input, plus ``flops_encode``/``flops_decode`` callables that run the same
work with autograd on (so :class:`torch.utils.flop_counter.FlopCounterMode` sees every convolution,
including those our inference path sends straight to oneDNN). Peers are randomly initialised: speed
does not depend on the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from fsqtok.tokenizers import Tokenizer


@dataclass
class Model:
    name: str
    module: nn.Module
    x: Tensor  # the input
    encode: Callable[[], object]
    decode: Callable[[], object]
    flops_encode: Callable[[], object]
    flops_decode: Callable[[], object]

    @property
    def params(self) -> str:
        return f"{sum(p.numel() for p in self.module.parameters()) / 1e6:.2f} M"


def ours(tok: Tokenizer, x: Tensor, name: str | None = None) -> Model:
    """fsqtok's default ``encode``/``decode`` (what users call) on ``x``."""
    idx = tok.encode(x)
    net_idx = tok._fold_tokens(idx)[0]
    return Model(name or type(tok).__name__, tok, x, lambda: tok.encode(x), lambda: tok.decode(idx),
                 lambda: tok._quantize(tok.encoder(tok._prepare(x)[0])),
                 lambda: tok.decoder(tok.quantizer.decode_indices(net_idx)))


def _same(encode: Callable[[], object], decode: Callable[[], object], name: str, module: nn.Module,
          x: Tensor) -> Model:
    return Model(name, module, x, encode, decode, encode, decode)


def vqmodel(tok: Tokenizer, x: Tensor) -> Model:
    """diffusers ``VQModel`` with ours' widths, depth, f and mid attention, and a 1000-code VQ."""
    from diffusers import VQModel

    c = tok.config
    widths = tuple(c.base_channels * m for m in c.channel_mult)
    peer = VQModel(
        down_block_types=("DownEncoderBlock2D",) * len(widths), up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=widths, layers_per_block=c.num_res_blocks, latent_channels=len(c.levels),
        num_vq_embeddings=1000, norm_num_groups=8, mid_block_add_attention=c.mid_attention,
    ).eval()
    h = peer.encode(x).latents.detach()
    return _same(lambda: peer.quantize(peer.encode(x).latents), lambda: peer.decode(h), "diffusers VQModel", peer, x)


def encodec(tok: Tokenizer, x: Tensor, residual_units: int | None) -> Model:
    """transformers ``EncodecModel`` with ours' hop, width and 4 codebooks of 1024; ``residual_units``
    dilated units per block (growth 3) like ours, or None for its default (one unit, LSTM bottleneck)."""
    from transformers import EncodecConfig, EncodecModel

    c = tok.config
    kw = dict(sampling_rate=c.sample_rate, audio_channels=1, num_filters=c.base_channels,
              upsampling_ratios=list(reversed(c.strides)), codebook_size=1024,
              target_bandwidths=[4 * 10 * c.sample_rate / 320 / 1000])
    if residual_units is not None:
        kw.update(num_residual_layers=residual_units, dilation_growth_rate=3)
    peer = EncodecModel(EncodecConfig(**kw)).eval()
    codes = peer.encode(x).audio_codes.detach()
    name = "EncodecModel" + ("" if residual_units is None else f", {residual_units} residual units per block")
    return _same(lambda: peer.encode(x), lambda: peer.decode(codes, [None]), name, peer, x)


def dac(tok: Tokenizer, x: Tensor) -> Model:
    """Descript's DAC with ours' widths (encoder 8 -> 128, decoder 128 -> 8), strides, dilations and
    kernel sizes, a 4-channel latent and 4 residual codebooks of 1024: the same Snake activations
    and convolution work as ours, as shipped (weight-normalised convs, non-causal)."""
    from dac.model import DAC

    c = tok.config
    width = c.base_channels * 2 ** len(c.strides)
    peer = DAC(encoder_dim=c.base_channels, encoder_rates=list(c.strides), latent_dim=tok.latent_channels,
               decoder_dim=width, decoder_rates=list(reversed(c.strides)), n_codebooks=4, codebook_size=1024,
               codebook_dim=tok.latent_channels, sample_rate=c.sample_rate).eval()
    codes = peer.encode(x)[1].detach()
    return _same(lambda: peer.encode(x), lambda: peer.decode(peer.quantizer.from_codes(codes)[0]),
                 "Descript DAC", peer, x)
