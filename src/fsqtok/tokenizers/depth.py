"""Depth tokenizer: the image family with one channel and metric-depth normalization.

Depth maps are ``(B, 1, H, W)`` in metres; NaN, inf and values <= 0 mean "no measurement".
Valid depth is clamped to ``[min_depth, max_depth]`` and mapped to [-1, 1] by log depth (or
inverse depth); invalid pixels get the neutral value 0 before the network, never a NaN, and
:class:`DepthOutput` carries the validity mask so a loss can ignore them. ``decode`` returns
metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..quantizers import QuantizerOutput
from .config import TokenizerConfig, TokenizerOutput
from .image import Conv2dConfig, Conv2dTokenizer


@dataclass(frozen=True)
class DepthConfig(Conv2dConfig):
    """:class:`DepthTokenizer` config: the 2D network fields plus the depth range and transform."""

    min_depth: float = 0.1  # metres; nearer valid depth is clamped to it
    max_depth: float = 100.0  # metres; farther valid depth is clamped to it
    depth_transform: str = "log"  # "log" (uniform in log depth) or "inverse" (uniform in 1 / depth)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_float("min_depth", lo=0.0, lo_open=True)
        self._check_float("max_depth", lo=0.0, lo_open=True)
        if self.max_depth <= self.min_depth:
            self._fail("max_depth", f"must be > min_depth={self.min_depth}, got {self.max_depth}")
        self._check_choice("depth_transform", ("log", "inverse"))


@dataclass
class DepthOutput(TokenizerOutput):
    """:class:`TokenizerOutput` plus what a masked depth loss needs.

    Attributes:
        valid_mask: bool ``(B, 1, H, W)``, False where the input was NaN, inf or <= 0.
        target: the normalized input in [-1, 1] (0 at invalid pixels).
        reconstruction_normalized: the network output in the same normalized space.
    """

    valid_mask: Tensor | None = None
    target: Tensor | None = None
    reconstruction_normalized: Tensor | None = None


class DepthTokenizer(Conv2dTokenizer):
    """Metric depth ``(B, 1, H, W)`` in metres <-> int64 tokens ``(B, H / f, W / f)``.

    Example::

        tok = DepthTokenizer()
        out = tok(depth)                                   # DepthOutput
        loss = (out.reconstruction_normalized - out.target).abs()[out.valid_mask].mean()
        metres = tok.decode(tok.encode(depth), input_shape=depth.shape)
    """

    modality: ClassVar[str] = "depth"
    model_type: ClassVar[str] = "depth_tokenizer"
    config_class: ClassVar[type[TokenizerConfig]] = DepthConfig
    layout: ClassVar[str] = "(B, 1, H, W) in metres"
    config: DepthConfig

    def __init__(self, config: DepthConfig | None = None) -> None:
        super().__init__(config)

    def _network_channels(self) -> int:
        return 1

    # -- normalization
    def normalize_depth(self, depth: Tensor) -> tuple[Tensor, Tensor]:
        """Metres -> ``(normalized in [-1, 1] with 0 at invalid pixels, bool validity mask)``."""
        c = self.config
        d = depth.float()
        valid = torch.isfinite(d) & (d > 0)
        d = torch.where(valid, d, torch.full_like(d, c.min_depth)).clamp(c.min_depth, c.max_depth)
        if c.depth_transform == "log":
            lo, hi = math.log(c.min_depth), math.log(c.max_depth)
            t = (d.log() - lo) / (hi - lo)
        else:
            near, far = 1.0 / c.min_depth, 1.0 / c.max_depth
            t = (d.reciprocal() - far) / (near - far)
        n = torch.where(valid, t * 2 - 1, torch.zeros_like(t))
        return n, valid

    def denormalize_depth(self, normalized: Tensor) -> Tensor:
        """Normalized values (clamped to [-1, 1]) -> metres in ``[min_depth, max_depth]``."""
        c = self.config
        t = (normalized.float().clamp(-1, 1) + 1) / 2
        if c.depth_transform == "log":
            lo, hi = math.log(c.min_depth), math.log(c.max_depth)
            return torch.exp(lo + t * (hi - lo))
        near, far = 1.0 / c.min_depth, 1.0 / c.max_depth
        return (far + t * (near - far)).reciprocal()

    # -- template hooks
    def _compression(self) -> str:
        c = self.config
        return f"{super()._compression()}; {c.depth_transform} depth over [{c.min_depth:g}, {c.max_depth:g}] m"

    def check_input(self, x: Tensor) -> None:
        self._check_tensor(x, 1, allow_nonfinite=True)

    def _prepare(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        self.check_input(x)
        normalized, valid = self.normalize_depth(x)
        ctx = {"input_shape": tuple(x.shape), "valid": valid, "target": normalized}
        return self._pad(normalized.to(self._dtype)), ctx

    def _restore(self, y: Tensor, ctx: dict[str, Any]) -> Tensor:
        return self.denormalize_depth(self._crop(y, ctx))

    def _output(self, reconstruction: Tensor, y: Tensor, q: QuantizerOutput, ctx: dict[str, Any]) -> DepthOutput:
        return DepthOutput(
            reconstruction=reconstruction,
            quantizer_loss=q.loss,
            quantizer_output=q,
            valid_mask=ctx["valid"],
            target=ctx["target"],
            reconstruction_normalized=self._crop(y, ctx),
        )
