"""Ports of NVIDIA Cosmos-Tokenizer's discrete image (DI) and video (DV) tokenizers.

The networks are :mod:`fsqtok.encoders.cosmos_image` and :mod:`fsqtok.encoders.cosmos_video`;
the bottleneck is fsqtok's :class:`~fsqtok.quantizers.FSQ` (Cosmos's FSQ is the paper's formula
with ``atanh``, ``(1 + eps)`` and the first channel least significant, exactly what fsqtok
implements). The configs are the reference constructor's keyword arguments (``channels``,
``channels_mult``, ``attn_resolutions``, ``resolution``, ``z_channels``, ``embedding_dim``,
``levels``, ``spatial_compression``, ``patch_size`` ...), so a released variant is described by
the same numbers NVIDIA publishes. :mod:`fsqtok.convert.cosmos` fills them from a checkpoint.

Released variants (``nvidia/Cosmos-0.1-Tokenizer-*``): DI8x8 and DI16x16 are
``CosmosImageConfig(spatial_compression=8 | 16)``; DV4x8x8, DV8x8x8 and DV8x16x16 are
``CosmosVideoConfig(temporal_compression=4 | 8, spatial_compression=8 | 16)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ..encoders.cosmos_image import CosmosImageDecoder, CosmosImageEncoder
from ..encoders.cosmos_video import CosmosVideoDecoder, CosmosVideoEncoder
from ..encoders.patching import PATCH_METHODS
from .config import TokenizerConfig
from .image import ImageTokenizer
from .video import VideoTokenizer

NETWORK_FIELDS = ("channels", "channels_mult", "num_res_blocks", "attn_resolutions", "resolution", "z_channels",
                  "embedding_dim", "spatial_compression", "patch_size", "patch_method")


@dataclass(frozen=True)
class CosmosImageConfig(TokenizerConfig):
    """The reference ``DiscreteImageTokenizer`` kwargs fsqtok uses. Defaults: DI16x16."""

    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)  # FSQ levels (codebook 64,000)
    in_channels: int = 3
    out_channels: int = 3  # must equal in_channels
    channels: int = 128  # width of the first level (images: a multiple of 32, for GroupNorm(32))
    channels_mult: tuple[int, ...] = (2, 4, 4)  # width multiplier per level
    num_res_blocks: int = 2  # residual blocks per encoder level (decoder: one more)
    attn_resolutions: tuple[int, ...] = (32,)  # feature-map sizes (from `resolution`) with attention after each block
    resolution: int = 1024  # nominal input size; only decides where attention goes
    z_channels: int = 256  # encoder output width before quant_conv
    embedding_dim: int = 6  # FSQ channels: must equal len(levels)
    spatial_compression: int = 16  # 8 or 16 for the released models
    patch_size: int = 4  # Haar levels: log2(patch_size)
    patch_method: str = "haar"  # or "rearrange"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.quantizer != "fsq" or self.latent_channels not in (None, len(self.levels)):
            self._fail("quantizer", "Cosmos tokenizers use plain FSQ (quantizer='fsq', latent_channels=None)")
        for name in ("in_channels", "out_channels", "num_res_blocks", "resolution", "z_channels", "embedding_dim",
                     "spatial_compression", "patch_size"):
            self._check_int(name, minimum=1)
        if self.out_channels != self.in_channels:
            self._fail("out_channels", f"must equal in_channels ({self.in_channels}), got {self.out_channels}")
        if self._check_int("channels", minimum=1) % self.norm_groups:
            self._fail("channels", f"must be a multiple of {self.norm_groups} (GroupNorm with {self.norm_groups} "
                                   f"groups), got {self.channels}")
        self._check_ints("channels_mult", minimum=1)
        if self.attn_resolutions:
            self._check_ints("attn_resolutions", minimum=1)
        else:
            object.__setattr__(self, "attn_resolutions", ())
        if self.embedding_dim != len(self.levels):
            self._fail("embedding_dim", f"must equal len(levels) = {len(self.levels)}, got {self.embedding_dim}")
        self._check_choice("patch_method", PATCH_METHODS)
        for name in ("spatial_compression", "patch_size"):
            value = getattr(self, name)
            if value & (value - 1):
                self._fail(name, f"must be a power of 2, got {value}")
        if self.spatial_compression < self.patch_size:
            self._fail("spatial_compression", f"must be >= patch_size ({self.patch_size})")

    @property
    def norm_groups(self) -> int:
        """GroupNorm groups of the networks (the reference's 2D blocks use 32, its 3D blocks 1)."""
        return 32

    def network_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the encoder and decoder (besides their in/out channels)."""
        return {name: getattr(self, name) for name in NETWORK_FIELDS}


@dataclass(frozen=True)
class CosmosVideoConfig(CosmosImageConfig):
    """The reference ``CausalDiscreteVideoTokenizer`` (factorized encoder/decoder) kwargs. Defaults: DV8x16x16."""

    z_channels: int = 16
    temporal_compression: int = 8  # 4 or 8 for the released models
    z_factor: int = 1  # encoder output = z_factor * z_channels
    legacy_mode: bool = False  # the decoder's older choice of which levels upsample in time
    fps: float = 24.0  # nominal frame rate, for the reported token rate

    @property
    def norm_groups(self) -> int:
        return 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_int("z_factor", minimum=1)
        self._check_bool("legacy_mode")
        self._check_float("fps", lo=0.0, lo_open=True)
        value = self._check_int("temporal_compression", minimum=1)
        if value & (value - 1) or value < self.patch_size:
            self._fail("temporal_compression", f"must be a power of 2 >= patch_size ({self.patch_size}), got {value}")


class CosmosImageTokenizer(ImageTokenizer):
    """Cosmos DI: images ``(B, 3, H, W)`` in [-1, 1] <-> int64 tokens ``(B, H / s, W / s)``, codebook 64,000."""

    model_type: ClassVar[str] = "cosmos_image_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = CosmosImageConfig
    config: CosmosImageConfig

    def _build_networks(self) -> tuple[nn.Module, nn.Module]:
        c = self.config
        kwargs = c.network_kwargs()
        return CosmosImageEncoder(c.in_channels, **kwargs), CosmosImageDecoder(c.out_channels, **kwargs)

    @property
    def downsample_factor(self) -> int:
        return self.config.spatial_compression


class CosmosVideoTokenizer(VideoTokenizer):
    """Cosmos DV: videos ``(B, 3, T, H, W)`` in [-1, 1] <-> int64 tokens ``(B, 1 + ceil((T - 1) / tau), H / s, W / s)``.

    The network is causal (latent frame ``t`` sees input frames ``<= tau * t``) but its temporal
    attention looks at every earlier frame, so it encodes whole clips (no :meth:`encode_chunked`).
    """

    model_type: ClassVar[str] = "cosmos_video_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = CosmosVideoConfig
    config: CosmosVideoConfig

    def _build_networks(self) -> tuple[nn.Module, nn.Module]:
        c = self.config
        kwargs = {**c.network_kwargs(), "z_factor": c.z_factor, "temporal_compression": c.temporal_compression}
        return (CosmosVideoEncoder(c.in_channels, **kwargs),
                CosmosVideoDecoder(c.out_channels, **kwargs, legacy_mode=c.legacy_mode))

    @property
    def downsample_factor(self) -> int:
        return self.config.spatial_compression

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_compression

    def encode_chunked(self, x: Tensor, chunk_frames: int = 16) -> Tensor:
        """Not available: the temporal attention needs every earlier frame; use :meth:`encode`."""
        raise NotImplementedError(f"{type(self).__name__}: encode_chunked is not available (temporal attention "
                                  "sees every earlier frame); use encode")
