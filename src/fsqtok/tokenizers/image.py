"""Image tokenizer: VQGAN/MaskGIT conv encoder, FSQ, conv decoder.

Images are ``(B, 3, H, W)`` in [-1, 1]. ``H`` and ``W`` that are not multiples of the
compression ``f`` are padded (replicating edge pixels) and cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..encoders.image import ImageDecoder, ImageEncoder
from .base import Tokenizer
from .config import TokenizerConfig

# Pixel values beyond this magnitude are taken for un-normalized input (e.g. uint8 0..255).
_MAX_ABS_PIXEL = 2.0


@dataclass(frozen=True)
class Conv2dConfig(TokenizerConfig):
    """Network fields of the 2D conv family (images and depth). Defaults are a tiny CPU model."""

    base_channels: int = 16  # width of the first level (MaskGIT: 128)
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)  # width per level; f = 2 ** (len - 1) (MaskGIT f=16: 1,1,2,2,4)
    num_res_blocks: int = 1  # residual blocks per level (MaskGIT: 2)
    mid_attention: bool = True  # self-attention in the middle of encoder and decoder

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("base_channels", minimum=1)
        self._check_ints("channel_mult", minimum=1)
        self._check_int("num_res_blocks", minimum=1)
        self._check_bool("mid_attention")


@dataclass(frozen=True)
class ImageConfig(Conv2dConfig):
    """:class:`ImageTokenizer` config. Defaults: f=8, FSQ levels [8, 5, 5, 5] (the paper's MaskGIT setup)."""

    in_channels: int = 3  # 3 for RGB, 1 for grayscale

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("in_channels", minimum=1)


class Conv2dTokenizer(Tokenizer):
    """Shared body of :class:`ImageTokenizer` and :class:`~fsqtok.tokenizers.DepthTokenizer`."""

    grid_ndim: ClassVar[int] = 2
    axis_names: ClassVar[tuple[str, ...]] = ("B", "C", "H", "W")
    config: Conv2dConfig

    def __init__(self, config: Conv2dConfig | None = None) -> None:
        super().__init__(config)
        self.net_channels = self._network_channels()
        c = self.config
        arch = dict(
            latent_channels=self.latent_channels,
            base_channels=c.base_channels,
            channel_mult=c.channel_mult,
            num_res_blocks=c.num_res_blocks,
            mid_attention=c.mid_attention,
        )
        self.encoder = ImageEncoder(self.net_channels, **arch)
        self.decoder = ImageDecoder(self.net_channels, **arch)

    def _network_channels(self) -> int:
        raise NotImplementedError

    @property
    def downsample_factor(self) -> int:
        """Spatial compression ``f``: one token per ``f x f`` pixels."""
        return 2 ** (len(self.config.channel_mult) - 1)

    @property
    def bits_per_pixel(self) -> float:
        """Bits per input pixel: ``num_stages * log2(codebook_size) / f**2``."""
        return self.num_stages * self.bits_per_token / self.downsample_factor**2

    def tokens_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """``(B, C, H, W)`` -> ``(B, ceil(H / f), ceil(W / f))`` (``(B, S, h, w)`` with residual FSQ)."""
        b, _, h, w = self._check_shape(input_shape, self.net_channels)
        f = self.downsample_factor
        return self._tokens_for_grid((b,), (math.ceil(h / f), math.ceil(w / f)))

    def _compression(self) -> str:
        f = self.downsample_factor
        return f"{f}x{f} (spatial)"

    def _rates(self) -> dict[str, Any]:
        return {"bits_per_pixel": round(self.bits_per_pixel, 5)}

    def _pad(self, x: Tensor) -> Tensor:
        f = self.downsample_factor
        ph, pw = -x.shape[-2] % f, -x.shape[-1] % f
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    @staticmethod
    def _crop(y: Tensor, ctx: dict[str, Any]) -> Tensor:
        shape = ctx.get("input_shape")
        return y if shape is None else y[..., : shape[-2], : shape[-1]]


class ImageTokenizer(Conv2dTokenizer):
    """Images ``(B, 3, H, W)`` in [-1, 1] <-> int64 tokens ``(B, H / f, W / f)``.

    Example::

        tok = ImageTokenizer()                      # tiny default, f=8, codebook 1000
        idx = tok.encode(x)                          # (B, h, w)
        x_hat = tok.decode(idx, input_shape=x.shape)
    """

    modality: ClassVar[str] = "image"
    model_type: ClassVar[str] = "image_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = ImageConfig
    config: ImageConfig

    def __init__(self, config: ImageConfig | None = None) -> None:
        super().__init__(config)

    def _network_channels(self) -> int:
        return self.config.in_channels

    @property
    def layout(self) -> str:  # type: ignore[override]
        return f"(B, {self.net_channels}, H, W) in [-1, 1]"

    def _prepare(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        self._check_tensor(x, self.net_channels)
        lo, hi = (float(v) for v in torch.aminmax(x))
        if lo < -_MAX_ABS_PIXEL or hi > _MAX_ABS_PIXEL:
            self._fail(f"pixel values must be in [-1, 1], got range [{lo:g}, {hi:g}] (map uint8 with x / 127.5 - 1)")
        return self._pad(x.to(self._dtype)), {"input_shape": tuple(x.shape)}

    def _restore(self, y: Tensor, ctx: dict[str, Any]) -> Tensor:
        return self._crop(y, ctx)
