"""Audio tokenizer: causal SEANet/DAC conv encoder, residual FSQ, conv decoder.

Waveforms are ``(B, C, T)`` at ``config.sample_rate`` (other rates are resampled with
``torchaudio.functional.resample`` when ``sample_rate=`` is given). ``channels="mono"`` mixes
down to one channel; ``"independent"`` tokenizes every channel on its own and adds a channel
axis to the tokens. With residual FSQ the bitrate is chosen at decode time
(``decode(indices, num_stages=k)``). A causal model encodes and decodes in fixed blocks of
``config.block_tokens`` tokens with carried state, so it streams (:meth:`AudioTokenizer.stream_encoder`,
:meth:`AudioTokenizer.stream_decoder`, :mod:`fsqtok.tokenizers.audio_stream`) with exactly the
tokens and samples of one whole pass, however the stream is cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..encoders.audio import AudioDecoder, AudioEncoder
from .audio_stream import AudioStreamDecoder, AudioStreamEncoder
from .base import Tokenizer, inference
from .config import TokenizerConfig, TokenizerOutput


@dataclass(frozen=True)
class AudioConfig(TokenizerConfig):
    """:class:`AudioTokenizer` config. Defaults: a tiny causal model, 16 kHz, 50 tokens/s, 4 residual FSQ stages."""

    quantizer: str = "rfsq"
    num_stages: int | None = None  # None: 4 for "rfsq" (4 x log2(1000) bits x 50 tokens/s ~ 2 kbit/s), else 1
    quantize_dropout: bool | None = None  # None: True for "rfsq" (any prefix of stages decodes well), else False
    sample_rate: int = 16000  # Hz of the waveforms the model takes and returns
    channels: str = "mono"  # "mono" (mix down) or "independent" (each channel tokenized on its own)
    base_channels: int = 8  # width after the input conv; doubles at every stride (DAC: 64)
    strides: tuple[int, ...] = (2, 4, 5, 8)  # product = samples per token (320 -> 50 tokens/s at 16 kHz)
    dilations: tuple[int, ...] = (1, 3, 9)  # of the residual units in each block
    causal: bool = True  # left padding only: streaming and chunked encoding
    # causal models encode and decode in blocks of this many tokens with carried state, whole or streamed,
    # so both give the same bits; the stream's latency (block_tokens * hop samples) against whole-pass speed
    block_tokens: int = 4

    def __post_init__(self) -> None:
        residual = self.quantizer == "rfsq"
        if self.num_stages is None:
            object.__setattr__(self, "num_stages", 4 if residual else 1)
        if self.quantize_dropout is None:
            object.__setattr__(self, "quantize_dropout", residual)
        super().__post_init__()
        self._check_int("sample_rate", minimum=1)
        self._check_choice("channels", ("mono", "independent"))
        self._check_int("base_channels", minimum=1)
        self._check_ints("strides", minimum=1)
        self._check_ints("dilations", minimum=1)
        self._check_bool("causal")
        self._check_int("block_tokens", minimum=1)


class AudioTokenizer(Tokenizer):
    """Waveforms ``(B, C, T)`` <-> int64 tokens ``(B, S, N)`` (``(B, C, S, N)`` with independent channels).

    Example::

        tok = AudioTokenizer()                          # 16 kHz, 50 tokens/s, 4 stages
        idx = tok.encode(wav, sample_rate=44100)         # resampled to 16 kHz first
        low = tok.decode(idx, num_stages=2)              # half the bitrate
        enc = tok.stream_encoder()                       # wav16 at 16 kHz, 10 ms at a time: encode(wav16)'s tokens
        idx = torch.cat([enc.push(c) for c in wav16.split(160, dim=-1)] + [enc.flush()], dim=-1)
    """

    modality: ClassVar[str] = "audio"
    model_type: ClassVar[str] = "audio_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = AudioConfig
    grid_ndim: ClassVar[int] = 1
    axis_names: ClassVar[tuple[str, ...]] = ("B", "C", "T")
    config: AudioConfig

    def __init__(self, config: AudioConfig | None = None) -> None:
        super().__init__(config)
        self.encoder, self.decoder = self._build_networks()

    def _build_networks(self) -> tuple[nn.Module, nn.Module]:
        """``(encoder, decoder)``: mono waveform ``(B, 1, T)`` <-> latents ``(B, latent_channels, T / hop)``."""
        c = self.config
        arch = dict(
            latent_channels=self.latent_channels,
            base_channels=c.base_channels,
            strides=c.strides,
            dilations=c.dilations,
            causal=c.causal,
        )
        return AudioEncoder(1, **arch), AudioDecoder(1, **arch)

    @property
    def layout(self) -> str:  # type: ignore[override]
        return f"(B, C, T) waveform at {self.config.sample_rate} Hz"

    # -- rates
    @property
    def hop_length(self) -> int:
        """Samples per token: ``prod(strides)``."""
        return math.prod(self.config.strides)

    @property
    def tokens_per_second(self) -> float:
        """Token positions per second of audio (per channel; each carries ``num_stages`` indices)."""
        return self.config.sample_rate / self.hop_length

    @property
    def bitrate(self) -> float:
        """Bits per second with every stage: ``tokens_per_second * num_stages * log2(codebook_size)``."""
        return self.bitrate_at(self.num_stages)

    def bitrate_at(self, num_stages: int) -> float:
        """Bits per second when decoding from the first ``num_stages`` stages."""
        if not 1 <= num_stages <= self.num_stages:
            self._fail(f"num_stages must be in [1, {self.num_stages}], got {num_stages}")
        return self.tokens_per_second * num_stages * self.bits_per_token

    def _compression(self) -> str:
        return f"{self.hop_length}x (temporal; {self.tokens_per_second:g} tokens/s at {self.config.sample_rate} Hz)"

    def _rates(self) -> dict[str, Any]:
        return {
            "sample_rate": self.config.sample_rate,
            "tokens_per_second": self.tokens_per_second,
            "bitrate_bps": round(self.bitrate, 2),
            "causal": self.config.causal,
        }

    # -- shapes and tokens
    @property
    def _independent(self) -> bool:
        return self.config.channels == "independent"

    @property
    def _extra_token_axes(self) -> int:
        return int(self._independent)

    def _resampled_length(self, length: int, sample_rate: int | None) -> int:
        """Samples after ``torchaudio.functional.resample`` to ``config.sample_rate``, computed as it
        computes them (a float32 ceil, which for long inputs can differ from the exact ceil by one)."""
        sr = self._check_rate(sample_rate)
        if sr == self.config.sample_rate:
            return length
        g = math.gcd(sr, self.config.sample_rate)
        orig, new = sr // g, self.config.sample_rate // g
        return int(torch.ceil(torch.as_tensor(new * length / orig)))

    def _check_rate(self, sample_rate: int | None) -> int:
        if sample_rate is None:
            return self.config.sample_rate
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            self._fail(f"sample_rate must be a positive int, got {sample_rate!r}")
        return sample_rate

    def tokens_shape(self, input_shape: Sequence[int], sample_rate: int | None = None) -> tuple[int, ...]:
        """``(B, C, T)`` -> ``(B, [C,] [S,] ceil(T' / hop))`` where ``T'`` is ``T`` after resampling."""
        b, c, t = self._check_shape(input_shape, None)
        n = math.ceil(self._resampled_length(t, sample_rate) / self.hop_length)
        return self._tokens_for_grid((b, c) if self._independent else (b,), (n,))

    def _fold_tokens(self, indices: Tensor) -> tuple[Tensor, dict[str, Any]]:
        if not self._independent:
            return indices, {}
        b, c = indices.shape[:2]
        return indices.flatten(0, 1), {"batch": b, "channels": c}

    def _unfold_tokens(self, indices: Tensor, ctx: dict[str, Any]) -> Tensor:
        if not self._independent:
            return indices
        return indices.reshape(ctx["batch"], ctx["channels"], *indices.shape[1:])

    # -- template hooks
    def _prepare(self, x: Tensor, sample_rate: int | None = None) -> tuple[Tensor, dict[str, Any]]:
        self._check_tensor(x, None)
        sr = self._check_rate(sample_rate)
        if sr != self.config.sample_rate:
            import torchaudio.functional as AF

            x = AF.resample(x.float(), sr, self.config.sample_rate)
        b, c, t = x.shape
        ctx = {"input_shape": (b, c, t), "batch": b, "channels": c}
        x = self._mix(x)
        pad = -t % self.hop_length
        return (F.pad(x, (0, pad)) if pad else x), ctx

    def _mix(self, x: Tensor) -> Tensor:
        """``(B, C, T)`` -> network input ``(B', 1, T)``: channels folded into ``B'`` or averaged.

        The average adds channels left to right (the same additions for any length ``T``, which a
        reduction kernel does not promise), so streamed chunks mix down bit-exactly.
        """
        b, c, t = x.shape
        x = x.to(self._dtype)
        if self._independent:
            return x.reshape(b * c, 1, t)
        total = x[:, :1]
        for i in range(1, c):
            total = total + x[:, i : i + 1]
        return total / c if c > 1 else total

    def _restore(self, y: Tensor, ctx: dict[str, Any]) -> Tensor:
        shape = ctx.get("input_shape")
        if shape is not None:
            y = y[..., : shape[-1]]
        if self._independent:
            y = y.reshape(ctx["batch"], ctx["channels"], y.shape[-1])
        return y

    # -- entry points with a sample rate
    @inference
    def encode(self, x: Tensor, sample_rate: int | None = None) -> Tensor:  # type: ignore[override]
        """Waveform ``(B, C, T)`` (at ``sample_rate``, default the config's) -> int64 tokens."""
        return self._encode_prepared(*self._prepare(x, sample_rate))

    def decode(  # type: ignore[override]
        self,
        indices: Tensor,
        *,
        input_shape: Sequence[int] | None = None,
        num_stages: int | None = None,
        sample_rate: int | None = None,
    ) -> Tensor:
        """Tokens -> waveform at ``config.sample_rate``.

        ``input_shape`` and ``sample_rate`` are what :meth:`encode` was given: the output is cropped
        to the input's length after resampling, ``(B, C or 1, T')``.
        """
        if input_shape is not None:
            b, c, t = self._check_shape(input_shape, None)
            input_shape = (b, c, self._resampled_length(t, sample_rate))
        elif sample_rate is not None:
            self._fail("sample_rate is used with input_shape (the shape and rate given to encode)")
        return super().decode(indices, input_shape=input_shape, num_stages=num_stages)

    def _input_shape_hint(self) -> str:
        return f" at {self.config.sample_rate} Hz (pass sample_rate= too when encode was given one)"

    def _card_usage(self) -> str:
        return ("indices = tokenizer.encode(x, sample_rate=sr)  # x: (B, C, T) at sr Hz\n"
                f"x_hat = tokenizer.decode(indices, input_shape=x.shape, sample_rate=sr)  # at {self.config.sample_rate} Hz")

    def forward(self, x: Tensor, sample_rate: int | None = None) -> TokenizerOutput:  # type: ignore[override]
        """Encode, quantize and decode; the reconstruction is at ``config.sample_rate``."""
        return self._forward_prepared(*self._prepare(x, sample_rate))

    # -- blocks and streams (causal models)
    @property
    def _causal(self) -> bool:
        """Whether the networks see no future samples (``config.causal``): the block pass and streams need it."""
        return self.config.causal

    def _require_causal(self, what: str) -> None:
        if not self._causal:
            self._fail(f"{what} needs a causal model (config.causal=True)")

    def _encode_prepared(self, x_net: Tensor, ctx: dict[str, Any]) -> Tensor:
        if not self._causal:
            return super()._encode_prepared(x_net, ctx)
        return self._unfold_tokens(AudioStreamEncoder(self)._whole([x_net]), ctx)

    def _decode_net(self, indices: Tensor) -> Tensor:
        if not self._causal:
            return super()._decode_net(indices)
        return AudioStreamDecoder(self)._whole([indices])

    def stream_encoder(self) -> AudioStreamEncoder:
        """A stream of samples ``(B, C, n)`` at ``config.sample_rate`` in, tokens out; bit-exact with :meth:`encode`.

        ``push`` returns the tokens completed so far (the first after ``block_tokens * hop_length``
        samples), ``flush`` the rest. Needs a causal model.
        """
        self._require_causal("stream_encoder")
        return AudioStreamEncoder(self)

    def stream_decoder(self, num_stages: int | None = None) -> AudioStreamDecoder:
        """A stream of tokens in, samples out; bit-exact with :meth:`decode` (``num_stages``: see there).

        ``None`` decodes every stage of the first push (later pushes must carry as many); ``k``
        decodes the first ``k`` stages of each push. Needs a causal model.
        """
        self._require_causal("stream_decoder")
        return AudioStreamDecoder(self, num_stages)

    @torch.no_grad()
    def encode_chunked(self, x: Tensor, chunk_tokens: int = 50, sample_rate: int | None = None) -> Tensor:
        """:meth:`encode`, fed to a stream ``chunk_tokens`` tokens at a time; the result equals it bit for bit.

        :meth:`encode` itself runs in blocks with bounded activation memory; this remains for the
        callers that feed a file in pieces.
        """
        self._require_causal("encode_chunked")
        if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
            self._fail(f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
        x_net, ctx = self._prepare(x, sample_rate)
        chunks = x_net.split(chunk_tokens * self.hop_length, dim=-1)
        return self._unfold_tokens(AudioStreamEncoder(self)._whole(chunks), ctx)
