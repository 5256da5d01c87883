"""VQGAN/MaskGIT-style 2D conv encoder and decoder, used for images and depth maps.

One resolution level per entry of ``channel_mult``; every level but the last halves H and W,
so the spatial compression is ``2 ** (len(channel_mult) - 1)``. The middle has two residual
blocks around an optional single-head attention block.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .blocks import AttnBlock2d, Downsample2d, ResBlock2d, Upsample2d, group_norm, inference_layout, norm_silu


def _mid(channels: int, attention: bool) -> nn.Sequential:
    layers: list[nn.Module] = [ResBlock2d(channels, channels)]
    if attention:
        layers.append(AttnBlock2d(channels))
    layers.append(ResBlock2d(channels, channels))
    return nn.Sequential(*layers)


class ImageEncoder(nn.Module):
    """``(B, in_channels, H, W)`` -> ``(B, latent_channels, H / f, W / f)`` with ``f = 2 ** (len(channel_mult) - 1)``.

    H and W must be multiples of ``f`` (the tokenizer pads).
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 4,
        base_channels: int = 128,  # width of the first level (MaskGIT: 128)
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),  # width multiplier per level (MaskGIT f=16)
        num_res_blocks: int = 2,  # residual blocks per level
        mid_attention: bool = True,  # self-attention between the two middle residual blocks
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_mult]
        self.downsample_factor = 2 ** (len(widths) - 1)
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        prev = widths[0]
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                layers.append(ResBlock2d(prev, width))
                prev = width
            if level < len(widths) - 1:
                layers.append(Downsample2d(prev))
        self.down = nn.Sequential(*layers)
        self.mid = _mid(prev, mid_attention)
        self.norm_out = group_norm(prev)
        self.conv_out = nn.Conv2d(prev, latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(inference_layout(x))))
        return self.conv_out(norm_silu(self.norm_out, h)).contiguous()


class ImageDecoder(nn.Module):
    """``(B, latent_channels, h, w)`` -> ``(B, out_channels, h * f, w * f)``; mirrors :class:`ImageEncoder`."""

    def __init__(
        self,
        out_channels: int = 3,
        latent_channels: int = 4,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        mid_attention: bool = True,
    ) -> None:
        super().__init__()
        widths = [base_channels * m for m in channel_mult]
        prev = widths[-1]
        self.conv_in = nn.Conv2d(latent_channels, prev, 3, padding=1)
        self.mid = _mid(prev, mid_attention)
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock2d(prev, widths[level]))
                prev = widths[level]
            if level > 0:
                layers.append(Upsample2d(prev))
        self.up = nn.Sequential(*layers)
        self.norm_out = group_norm(prev)
        self.conv_out = nn.Conv2d(prev, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(inference_layout(z))))
        return self.conv_out(norm_silu(self.norm_out, h)).contiguous()
