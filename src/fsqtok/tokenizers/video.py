"""Video tokenizer: causal 3D conv encoder, FSQ, causal 3D conv decoder (MAGVIT-v2 / Cosmos style).

Videos are ``(B, 3, T, H, W)`` in [-1, 1]. ``1 + k * tau`` frames become ``1 + k`` latent
frames; the first frame is encoded on its own, so a 1-frame video is an image. Other frame
counts are padded (repeating the last frame) and H, W to multiples of ``f`` (repeating edge
pixels), then cropped back. :meth:`VideoTokenizer.encode_chunked` encodes long clips a few
frames at a time with exactly the tokens of one whole pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..encoders.causal import streaming
from ..encoders.video import VideoDecoder, VideoEncoder
from .base import Tokenizer, inference
from .config import TokenizerConfig, chunk_sizes


@dataclass(frozen=True)
class VideoConfig(TokenizerConfig):
    """:class:`VideoTokenizer` config. Defaults: a tiny model, 4x8x8 compression, Cosmos-like 64K FSQ codebook."""

    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)  # codebook 64000 (Cosmos DV)
    in_channels: int = 3
    base_channels: int = 8  # width of the first level (Cosmos/MAGVIT-v2: 128)
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)  # width per level; spatial f = 2 ** (len - 1)
    temporal_downsample: tuple[bool, ...] = (True, True, False)  # per downsampling step; tau = 2 ** count(True)
    num_res_blocks: int = 1  # residual blocks per level
    mid_attention: bool = False  # per-frame spatial attention in the middle
    fps: float = 24.0  # nominal frame rate, for the reported token rate

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("in_channels", minimum=1)
        self._check_int("base_channels", minimum=1)
        mult = self._check_ints("channel_mult", minimum=1)
        temporal = self._check_ints("temporal_downsample", element=bool)
        if len(temporal) != len(mult) - 1:
            self._fail(
                "temporal_downsample",
                f"needs len(channel_mult) - 1 = {len(mult) - 1} entries (one per downsampling), got {len(temporal)}",
            )
        self._check_int("num_res_blocks", minimum=1)
        self._check_bool("mid_attention")
        self._check_float("fps", lo=0.0, lo_open=True)


class VideoTokenizer(Tokenizer):
    """Videos ``(B, 3, T, H, W)`` in [-1, 1] <-> int64 tokens ``(B, 1 + ceil((T - 1) / tau), H / f, W / f)``.

    Example::

        tok = VideoTokenizer()                          # tau=4, f=8
        idx = tok.encode(clip)                           # 9 frames -> (B, 3, h, w)
        idx = tok.encode_chunked(long_clip, chunk_frames=16)
    """

    modality: ClassVar[str] = "video"
    model_type: ClassVar[str] = "video_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = VideoConfig
    grid_ndim: ClassVar[int] = 3
    axis_names: ClassVar[tuple[str, ...]] = ("B", "C", "T", "H", "W")
    config: VideoConfig

    def __init__(self, config: VideoConfig | None = None) -> None:
        super().__init__(config)
        self.encoder, self.decoder = self._build_networks()

    def _build_networks(self) -> tuple[nn.Module, nn.Module]:
        """``(encoder, decoder)`` for this config (ports of other architectures override this)."""
        c = self.config
        arch = dict(
            latent_channels=self.latent_channels,
            base_channels=c.base_channels,
            channel_mult=c.channel_mult,
            temporal_downsample=c.temporal_downsample,
            num_res_blocks=c.num_res_blocks,
            mid_attention=c.mid_attention,
        )
        return VideoEncoder(c.in_channels, **arch), VideoDecoder(c.in_channels, **arch)

    @property
    def layout(self) -> str:  # type: ignore[override]
        return f"(B, {self.config.in_channels}, T, H, W) in [-1, 1]"

    # -- rates
    @property
    def downsample_factor(self) -> int:
        """Spatial compression ``f``."""
        return 2 ** (len(self.config.channel_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        """Temporal compression ``tau``: each latent frame after the first covers ``tau`` frames."""
        return 2 ** sum(self.config.temporal_downsample)

    @property
    def bits_per_pixel(self) -> float:
        """Bits per pixel per frame (ignoring the first frame): ``num_stages * log2(K) / (tau * f**2)``."""
        return self.num_stages * self.bits_per_token / (self.temporal_factor * self.downsample_factor**2)

    def tokens_per_second(self, height: int, width: int, fps: float | None = None) -> float:
        """Token positions per second of ``height x width`` video at ``fps`` (default ``config.fps``).

        Long-clip rate; with residual FSQ each position carries ``num_stages`` indices.
        """
        f = self.downsample_factor
        per_frame = math.ceil(height / f) * math.ceil(width / f)
        return (fps or self.config.fps) / self.temporal_factor * per_frame

    def _compression(self) -> str:
        f, tau = self.downsample_factor, self.temporal_factor
        return f"{tau}x{f}x{f} (temporal x spatial; first frame alone)"

    def _rates(self) -> dict[str, Any]:
        return {
            "bits_per_pixel": round(self.bits_per_pixel, 5),
            "fps": self.config.fps,
            "tokens_per_second_256x256": self.tokens_per_second(256, 256),
        }

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` input frames: ``1 + ceil((T - 1) / tau)``."""
        return 1 + math.ceil((num_frames - 1) / self.temporal_factor)

    def tokens_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """``(B, C, T, H, W)`` -> ``(B, [S,] 1 + ceil((T - 1) / tau), ceil(H / f), ceil(W / f))``."""
        b, _, t, h, w = self._check_shape(input_shape, self.config.in_channels)
        f = self.downsample_factor
        return self._tokens_for_grid((b,), (self.latent_frames(t), math.ceil(h / f), math.ceil(w / f)))

    # -- template hooks
    def check_input(self, x: Tensor) -> None:
        self._check_pixels(x, self.config.in_channels)

    def _pad(self, x: Tensor, extra_frames: int) -> Tensor:
        """Repeat the last frame ``extra_frames`` times and edge pixels up to multiples of ``f``."""
        f = self.downsample_factor
        ph, pw = -x.shape[-2] % f, -x.shape[-1] % f
        if ph or pw or extra_frames:
            x = F.pad(x, (0, pw, 0, ph, 0, extra_frames), mode="replicate")
        return x

    def _prepare(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        self.check_input(x)
        t = x.shape[2]
        extra = 1 + (self.latent_frames(t) - 1) * self.temporal_factor - t
        return self._pad(x.to(self._dtype), extra), {"input_shape": tuple(x.shape)}

    def _restore(self, y: Tensor, ctx: dict[str, Any]) -> Tensor:
        shape = ctx.get("input_shape")
        return y if shape is None else y[:, :, : shape[2], : shape[3], : shape[4]]

    @inference
    def encode_chunked(self, x: Tensor, chunk_frames: int = 16) -> Tensor:
        """Encode a long clip ``chunk_frames`` frames at a time; the result equals :meth:`encode`.

        ``chunk_frames`` must be a multiple of ``tau`` (the first chunk also takes frame 0).
        The causal convs run in streaming mode, each keeping the few past frames it still
        needs, so activation memory is bounded by the chunk, not the clip.
        """
        tau = self.temporal_factor
        valid = isinstance(chunk_frames, int) and not isinstance(chunk_frames, bool)
        if not valid or chunk_frames < tau or chunk_frames % tau:
            self._fail(f"chunk_frames must be a positive multiple of tau={tau}, got {chunk_frames!r}")
        self.check_input(x)
        t = x.shape[2]
        padded = 1 + (self.latent_frames(t) - 1) * tau
        parts, start = [], 0
        with streaming(self.encoder), self._all_stages():
            for size in chunk_sizes(padded, 1 + chunk_frames, chunk_frames):
                chunk = x[:, :, start : min(start + size, t)].to(self._dtype)
                parts.append(self.quantizer(self.encoder(self._pad(chunk, size - chunk.shape[2]))).indices)
                start += size
        return torch.cat(parts, dim=-3)
