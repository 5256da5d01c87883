"""Port of NVIDIA NeMo's FSQ audio codecs: a HiFi-GAN encoder and decoder around grouped FSQ.

Covers the Low Frame-rate Speech Codec (22.05 kHz, hop 1024 = 21.5 frames/s, 8 x [8, 7, 6, 6])
and any NeMo ``AudioCodecModel`` built from ``HiFiGANEncoder``, ``GroupFiniteScalarQuantizer``
(or ``FiniteScalarQuantizer``, one group) and ``HiFiGANDecoder``. ``fsqtok convert nemo`` reads
the architecture from a ``.nemo`` file and maps its weights here
(:mod:`fsqtok.convert.nemo`).

Tokens are int64 ``(B, groups, frames)``, as NeMo's ``AudioCodecModel.encode`` returns them, packed
as in the FSQ paper (first channel least significant). The bound uses the paper's printed formula
(``FSQ(variant="printed")``), as NeMo does; the fsqtok default would change about one token in 200.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ..encoders.hifigan import ACTIVATIONS, HiFiGANDecoder, HiFiGANEncoder
from ..quantizers.fsq import VARIANTS
from ..quantizers.grouped_fsq import GroupedFSQ
from .audio import AudioTokenizer
from .config import TokenizerConfig


@dataclass(frozen=True)
class NemoAudioConfig(TokenizerConfig):
    """:class:`NemoAudioTokenizer` config. Defaults: NeMo's Low Frame-rate Speech Codec (22.05 kHz)."""

    levels: tuple[int, ...] = (8, 7, 6, 6)  # FSQ levels of each group
    num_groups: int = 8  # FSQ groups; tokens per frame
    fsq_variant: str = "printed"  # FSQ bound formula: "printed" (NeMo's) or "fsqtok"
    fsq_eps: float = 1e-3  # FSQ bound margin
    sample_rate: int = 22050  # Hz
    pad_mode: str = "reflect"  # padding of the centred convs
    encoder_rates: tuple[int, ...] = (2, 2, 4, 8, 8)  # downsampling per stage; product = samples per frame
    encoder_channels: int = 48  # width after the input conv, doubling per stage
    encoder_kernels: tuple[int, ...] = (3, 7, 11)  # multi-receptive-field kernel sizes
    encoder_dilations: tuple[int, ...] = (1,)  # residual units per branch, one per dilation
    encoder_in_kernel: int = 7
    encoder_out_kernel: int = 7
    encoder_activation: str = "lrelu"
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2, 2)  # upsampling per stage; product = samples per frame
    decoder_channels: int = 1024  # width after the input conv, halving per stage
    decoder_kernels: tuple[int, ...] = (3, 7, 11)
    decoder_dilations: tuple[int, ...] = (1, 3, 5)
    decoder_in_kernel: int = 7
    decoder_out_kernel: int = 3
    decoder_activation: str = "lrelu"
    decoder_output: str = "tanh"  # "tanh" or "clamp" to [-1, 1]
    decoder_grouped_up: bool = False  # upsampling convs with one group per output channel

    def __post_init__(self) -> None:
        self._check_int("num_groups", minimum=1)
        levels = self._check_ints("levels", minimum=2)
        if self.latent_channels is None:
            object.__setattr__(self, "latent_channels", self.num_groups * len(levels))
        super().__post_init__()
        if self.quantizer != "fsq":
            self._fail("quantizer", f"NeMo codecs use grouped FSQ: must be 'fsq', got {self.quantizer!r}")
        if self.latent_channels != self.num_groups * len(self.levels):
            self._fail("latent_channels", f"must be num_groups * len(levels) = {self.num_groups * len(self.levels)}")
        self._check_choice("fsq_variant", VARIANTS)
        self._check_float("fsq_eps", lo=0.0, hi=1.0)
        self._check_int("sample_rate", minimum=1)
        self._check_choice("pad_mode", ("reflect", "zeros", "replicate", "circular"))
        for side in ("encoder", "decoder"):
            for name in ("rates", "kernels", "dilations"):
                self._check_ints(f"{side}_{name}", minimum=1)
            for name in ("channels", "in_kernel", "out_kernel"):
                self._check_int(f"{side}_{name}", minimum=1)
            self._check_choice(f"{side}_activation", ACTIVATIONS)
        self._check_choice("decoder_output", ("tanh", "clamp"))
        self._check_bool("decoder_grouped_up")
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            self._fail("decoder_rates", f"product {math.prod(self.decoder_rates)} must equal that of encoder_rates "
                       f"({math.prod(self.encoder_rates)})")
        if self.decoder_channels % 2 ** len(self.decoder_rates):
            self._fail("decoder_channels", f"must be divisible by 2**{len(self.decoder_rates)} (halved per stage)")


class NemoAudioTokenizer(AudioTokenizer):
    """Mono waveforms ``(B, C, T)`` at ``config.sample_rate`` <-> int64 tokens ``(B, groups, frames)``.

    Channels are mixed down to mono; ``T`` is zero-padded to a multiple of the hop, as NeMo pads.
    ``decode`` returns ``(B, 1, T)`` (cropped to ``input_shape`` when given).
    """

    model_type: ClassVar[str] = "nemo_audio_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = NemoAudioConfig
    config: NemoAudioConfig

    def _build_quantizer(self) -> nn.Module:
        c = self.config
        return GroupedFSQ(c.levels, c.num_groups, eps=c.fsq_eps, variant=c.fsq_variant)

    def _build_networks(self) -> tuple[nn.Module, nn.Module]:
        c = self.config
        encoder = HiFiGANEncoder(
            self.latent_channels, c.encoder_rates, c.encoder_channels, c.encoder_in_kernel, c.encoder_out_kernel,
            c.encoder_kernels, c.encoder_dilations, c.encoder_activation, c.pad_mode)
        decoder = HiFiGANDecoder(
            self.latent_channels, c.decoder_rates, c.decoder_channels, c.decoder_in_kernel, c.decoder_out_kernel,
            c.decoder_kernels, c.decoder_dilations, c.decoder_activation, c.decoder_output, c.pad_mode,
            c.decoder_grouped_up)
        return encoder, decoder

    # -- reflect padding needs inputs longer than the padding
    def _prepare(self, x: Tensor, sample_rate: int | None = None) -> tuple[Tensor, dict[str, Any]]:
        x_net, ctx = super()._prepare(x, sample_rate)
        self._check_frames(x_net.shape[-1] // self.hop_length, self.encoder.min_frames, "input", ctx["input_shape"][-1])
        return x_net, ctx

    def _check_tokens(self, indices: Tensor, num_stages: int | None) -> Tensor:
        indices = super()._check_tokens(indices, num_stages)
        self._check_frames(indices.shape[-1], self.decoder.min_frames, "indices", None)
        return indices

    def _check_frames(self, frames: int, needed: int, what: str, samples: int | None) -> None:
        if frames < needed:
            got = f"{samples} samples ({frames} frames)" if samples is not None else f"{frames} frames"
            self._fail(f"{what} of {got} is too short: with {self.config.pad_mode} padding this codec needs at least "
                       f"{needed} frames ({(needed - 1) * self.hop_length + 1} samples at {self.config.sample_rate} Hz)")

    # -- rates and token layout: one index per group and frame
    @property
    def hop_length(self) -> int:
        """Samples per frame: ``prod(encoder_rates)``."""
        return math.prod(self.config.encoder_rates)

    def bitrate_at(self, num_stages: int) -> float:
        """Bits per second: ``frames/s * groups * log2(codebook_size)`` (``num_stages`` must be 1)."""
        return super().bitrate_at(num_stages) * self.config.num_groups

    def _rates(self) -> dict[str, Any]:
        return {
            "sample_rate": self.config.sample_rate,
            "tokens_per_second": self.tokens_per_second,
            "groups": self.config.num_groups,
            "bitrate_bps": round(self.bitrate, 2),
            "causal": False,
        }

    @property
    def _independent(self) -> bool:
        return False

    @property
    def _causal(self) -> bool:
        return False  # centred (reflect-padded) convolutions: one whole pass, no blocks or streams

    @property
    def _extra_token_axes(self) -> int:
        return 1  # the group axis

    def _tokens_layout(self) -> str:
        return "(B, G, N)"

    def _tokens_for_grid(self, batch: tuple[int, ...], grid: Sequence[int]) -> tuple[int, ...]:
        return (*batch, self.config.num_groups, *grid)

    def model_card_body(self, repo_id: str) -> str:
        """The tokenizer card, opening with what this is: a port of a NeMo codec, bit-compatible tokens."""
        c = self.config
        intro = (f"A port of an NVIDIA NeMo FSQ audio codec (HiFi-GAN encoder and decoder, {c.num_groups} x "
                 f"FSQ {list(c.levels)}) to fsqtok: tokens `(B, {c.num_groups}, frames)` as NeMo's "
                 "`AudioCodecModel.encode` returns them.\n\n")
        body = super().model_card_body(repo_id)
        title, rest = body.split("\n\n", 1)
        return f"{title}\n\n{intro}{rest}"

    def encode_chunked(self, x: Tensor, chunk_tokens: int = 50, sample_rate: int | None = None) -> Tensor:
        """Not available: NeMo's codecs use centred convs, so chunks would change the tokens."""
        self._fail("encode_chunked needs a causal model; NeMo codecs are not causal (use encode)")
