"""UViM stage I (Kolesnikov et al. 2022, "UViM: A Unified Modeling Approach for Vision with Learned
Guide Codes"), with the FSQ paper's swap of VQ for FSQ.

* The **restricted oracle** sees the target ``y`` and the image context and emits a short guide
  code: a ``code_grid x code_grid`` grid of quantized tokens (16 tokens of FSQ ``[7,5,5,5,5]`` by
  default), through a pluggable bottleneck (:mod:`.uvim_quant`: FSQ, VQ, VQ with splitting).
* The **base model** ``f(x, z)`` predicts ``y`` from the image context and the code. During training a
  random fraction of code tokens is dropped (big_vision's ``code_dropout="random"``: a per-sample
  keep fraction ``u ~ U(0, 1)``, tokens chosen at random); a dropped token is zeroed and flagged in an
  extra "present" channel, so it is never confused with a real code. ``no_code=True`` trains and runs
  ``f(x, empty)``, the ablation without any code.

Both nets are small convolutional stacks (CPU-sized), downsampling the image by ``2**feature_down``;
the oracle downsamples further to the code grid. Stage II (:mod:`.uvim_lm`) predicts the code from
the image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...encoders.blocks import Downsample2d, ResBlock2d, Upsample2d, group_norm
from ...hub import HubMixin
from ...configs import ModelConfig
from ...quantizers import FSQ, QuantizerOutput, VectorQuantizer
from ...quantizers.vq_split import SplittingVectorQuantizer
from .tasks import TASKS, Task, make_task

CODE_DROPOUT = ("none", "random", "prefix")
QUANTIZERS = ("fsq", "vq", "vq_split")  # the guide-code bottlenecks


def build_quantizer(kind: str, in_channels: int, *, levels: Sequence[int], codebook_size: int,
                    dim: int, ema_decay: float, commitment_weight: float,
                    split_threshold: float) -> nn.Module:
    """The guide-code bottleneck named by ``kind`` (one of :data:`QUANTIZERS`).

    ``in_channels`` is the oracle's output width; FSQ projects it to ``len(levels)`` channels and
    VQ to ``dim`` (and back), so ``z_q`` always has ``in_channels`` channels.
    """
    if kind == "fsq":
        return FSQ(levels, in_channels)
    if kind == "vq":
        return VectorQuantizer(codebook_size, dim, in_channels, ema_decay=ema_decay,
                               commitment_weight=commitment_weight)
    if kind == "vq_split":
        return SplittingVectorQuantizer(codebook_size, dim, in_channels, ema_decay=ema_decay,
                                        commitment_weight=commitment_weight, split_threshold=split_threshold)
    raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {kind!r}")


@dataclass(frozen=True)
class UViMConfig(ModelConfig):
    """Stage-I model config (it is the model's config.json)."""

    task: str = "depth"  # one of TASKS
    image_size: int = 64  # square inputs; a multiple of 2 ** feature_down and of code_grid
    width: int = 64  # channels of both conv stacks
    blocks: int = 2  # residual blocks per stage
    feature_down: int = 2  # image -> feature map: / 2 ** feature_down
    code_grid: int = 4  # guide code: code_grid x code_grid tokens
    quantizer: str = "fsq"  # one of QUANTIZERS
    levels: tuple = (7, 5, 5, 5, 5)  # FSQ levels (4375 codes)
    codebook_size: int = 4096  # VQ codes
    code_dim: int = 8  # VQ code vector size
    ema_decay: float = 0.99  # VQ EMA codebook decay
    commitment_weight: float = 0.25  # VQ commitment loss weight
    split_threshold: float = 1e-3  # vq_split: EMA count (tokens per batch) below which a code is split into
    code_dropout: str = "random"  # one of CODE_DROPOUT
    no_code: bool = False  # ablation: the base model never sees a code, f(x, empty)
    # task options
    depth_bins: int = 64
    min_depth: float = 0.1
    max_depth: float = 30.0
    depth_spacing: str = "log"
    num_classes: int = 11
    max_instances: int = 8

    def __post_init__(self) -> None:
        self._check_choice("task", TASKS)
        self._check_choice("quantizer", QUANTIZERS)
        self._check_choice("code_dropout", CODE_DROPOUT)
        for name in ("image_size", "width", "feature_down", "code_grid", "codebook_size", "code_dim",
                     "depth_bins", "num_classes", "max_instances"):
            self._check_int(name, 1)
        self._check_int("blocks", 0)
        self._check_ints("levels", 2)
        for name in ("ema_decay", "commitment_weight", "split_threshold", "min_depth", "max_depth"):
            self._check_float(name, 0.0)
        feat = self.image_size // 2 ** self.feature_down
        if self.image_size % 2 ** self.feature_down or feat % self.code_grid or feat // self.code_grid & (
                feat // self.code_grid - 1):
            self._fail("image_size", f"{self.image_size} / 2**feature_down must be code_grid={self.code_grid} "
                       "times a power of two")
        if not isinstance(self.no_code, bool):
            self._fail("no_code", f"expected true/false, got {self.no_code!r}")

    @property
    def num_tokens(self) -> int:
        return self.code_grid ** 2

    @property
    def vocab_size(self) -> int:
        return self.codebook_size if self.quantizer != "fsq" else int(torch.tensor(self.levels).prod())

    def build_task(self) -> Task:
        return make_task(self.task, **dataclasses.asdict(self))


def _stack(width: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock2d(width, width) for _ in range(blocks)))


class ConvTrunk(nn.Module):
    """``(B, C_in, H, W) -> (B, width, H / 2**down, W / 2**down)``: stem conv, then (blocks, downsample) x down."""

    def __init__(self, in_channels: int, width: int, blocks: int, down: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1)]
        for _ in range(down):
            layers += [_stack(width, blocks), Downsample2d(width)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@dataclass
class UViMOutput:
    """Stage-I forward: ``logits (B, output_channels, H, W)``, code ``indices (B, g, g)`` (None without
    a code), the quantizer's ``quant`` output, and the kept-token mask ``keep (B, g, g)``."""

    logits: Tensor
    indices: Tensor | None
    quant: QuantizerOutput | None
    keep: Tensor


class UViMStage1(nn.Module, HubMixin):
    """Restricted oracle + base model. ``forward(image, target)`` for training; :meth:`predict` at inference."""

    model_type = "uvim_stage1"
    config_class = UViMConfig

    def __init__(self, config: UViMConfig | None = None) -> None:
        super().__init__()
        config = config or UViMConfig()
        self.config = config
        self.task = config.build_task()
        c, w, b = config, config.width, config.blocks
        code_down = (c.image_size // 2 ** c.feature_down // c.code_grid).bit_length() - 1
        # oracle: target + context -> code grid (a no-code model has none: no unused weights)
        if not c.no_code:
            self.oracle_target = ConvTrunk(self.task.target_channels, w, b, c.feature_down)
            self.oracle_context = ConvTrunk(self.task.context_channels, w, b, c.feature_down)
            self.oracle_head = nn.Sequential(*(m for _ in range(code_down) for m in (_stack(w, b), Downsample2d(w))),
                                             _stack(w, b), group_norm(w), nn.SiLU(), nn.Conv2d(w, w, 1))
            self.quantizer = build_quantizer(c.quantizer, w, levels=c.levels, codebook_size=c.codebook_size,
                                             dim=c.code_dim, ema_decay=c.ema_decay, commitment_weight=c.commitment_weight,
                                             split_threshold=c.split_threshold)
        # base model: context + code -> target
        self.base_context = ConvTrunk(self.task.context_channels, w, b, c.feature_down)
        self.code_in = nn.Conv2d(w + 1, w, 1)  # code channels + the "present" flag
        self.feature_size = c.image_size // 2 ** c.feature_down
        up: list[nn.Module] = [_stack(w, b)]
        for _ in range(c.feature_down):
            up += [Upsample2d(w), _stack(w, b)]
        self.decoder = nn.Sequential(*up, group_norm(w), nn.SiLU(), nn.Conv2d(w, self.task.output_channels, 3,
                                                                                  padding=1))

    @property
    def codebook_size(self) -> int:
        return self.config.vocab_size

    def _require_code(self) -> None:
        if self.config.no_code:
            raise ValueError("UViM: this model was trained without a code (no_code=True); it has no oracle")

    def _check(self, image: Tensor, name: str = "image") -> Tensor:
        s = self.config.image_size
        if image.ndim != 4 or image.shape[-2:] != (s, s):
            raise ValueError(f"UViM: {name} must be (B, C, {s}, {s}), got {tuple(image.shape)}")
        return image

    def encode(self, image: Tensor, target: Tensor) -> QuantizerOutput:
        """The oracle: image ``(B, 3|1, H, W)`` and target -> quantized code, ``z_q (B, width, g, g)``,
        ``indices (B, g, g)``."""
        self._require_code()
        ctx = self.task.context(self._check(image))
        h = self.oracle_target(self.task.encode_target(self._check(target, "target"))) + self.oracle_context(ctx)
        return self.quantizer(self.oracle_head(h))

    def code_dropout_mask(self, batch: int, device: torch.device) -> Tensor:
        """bool ``(B, g, g)``: True = keep. Each sample keeps a fraction ``u ~ U(0, 1)`` of its tokens,
        the most "important" first (``prefix``: raster order) or a random subset (``random``)."""
        g, n = self.config.code_grid, self.config.num_tokens
        importance = torch.linspace(1.0, 0.0, n + 2, device=device)[1:-1]
        keep = importance[None] > torch.rand(batch, 1, device=device)
        if self.config.code_dropout == "random":
            keep = torch.gather(keep, 1, torch.rand(batch, n, device=device).argsort(1))
        return keep.view(batch, g, g)

    def decode(self, image: Tensor, z_q: Tensor | None, keep: Tensor | None = None) -> Tensor:
        """The base model ``f(x, z)``: image and code ``z_q (B, width, g, g)`` (None: no code) ->
        logits ``(B, output_channels, H, W)``. ``keep (B, g, g)`` marks the tokens it sees."""
        ctx = self.task.context(self._check(image))
        b, g, w = ctx.shape[0], self.config.code_grid, self.config.width
        if z_q is None:
            z_q = ctx.new_zeros(b, w, g, g)
            keep = torch.zeros(b, g, g, dtype=torch.bool, device=ctx.device)
        elif keep is None:
            keep = torch.ones(b, g, g, dtype=torch.bool, device=ctx.device)
        present = keep[:, None].to(z_q.dtype)
        code = self.code_in(torch.cat([z_q * present, present], 1))
        code = F.interpolate(code, size=(self.feature_size,) * 2, mode="nearest")
        return self.decoder(self.base_context(ctx) + code)

    def forward(self, image: Tensor, target: Tensor) -> UViMOutput:
        """Training/oracle pass: code from the oracle, code dropout in training mode, then the base model."""
        b = image.shape[0]
        if self.config.no_code:
            keep = torch.zeros(b, self.config.code_grid, self.config.code_grid, dtype=torch.bool, device=image.device)
            return UViMOutput(self.decode(image, None), None, None, keep)
        q = self.encode(image, target)
        keep = (self.code_dropout_mask(b, image.device) if self.training and self.config.code_dropout != "none"
                else torch.ones_like(q.indices, dtype=torch.bool))
        return UViMOutput(self.decode(image, q.z_q, keep), q.indices, q, keep)

    def loss(self, image: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Task loss plus the quantizer's auxiliary loss; returns ``(loss, {"task", "quant", "out"})``."""
        return self.loss_from_output(self(image, target), target)

    def loss_from_output(self, out: UViMOutput, target: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """:meth:`loss` of a :meth:`forward` output (a recipe calls forward through its DDP wrapper)."""
        task_loss = self.task.loss(out.logits, target)
        quant = out.quant.loss if out.quant is not None else task_loss.new_zeros(())
        return task_loss + quant, {"task": task_loss.detach(), "quant": quant.detach(), "out": out}

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        """int64 code indices ``(B, g, g)`` or ``(B, g*g)`` -> ``z_q (B, width, g, g)``."""
        self._require_code()
        g = self.config.code_grid
        return self.quantizer.decode_indices(indices.reshape(-1, g, g))

    def prefix_keep(self, batch: int, length: int, device: torch.device) -> Tensor:
        """bool ``(B, g, g)`` that keeps the first ``length`` tokens in raster order (a code prefix)."""
        n = self.config.num_tokens
        if not 0 <= length <= n:
            raise ValueError(f"UViM: a code prefix has 0..{n} tokens, got {length}")
        return (torch.arange(n, device=device) < length).view(1, *(self.config.code_grid,) * 2).expand(batch, -1, -1)

    @torch.no_grad()
    def predict(self, image: Tensor, indices: Tensor | None = None) -> Tensor:
        """``f(x, z)`` as a task prediction (depth metres, RGB, or class/instance ids); ``indices=None``
        (or a ``no_code`` model) predicts from the image alone. ``indices (B, k)`` with ``k < g*g`` is a
        code prefix: the first ``k`` tokens in raster order, the rest dropped (as code dropout drops them)."""
        if indices is None or self.config.no_code:
            return self.task.predict(self.decode(image, None))
        b, n = indices.shape[0], self.config.num_tokens
        flat = indices.reshape(b, -1)
        k = flat.shape[1]
        if k < n:
            flat = torch.cat([flat, flat.new_zeros(b, n - k)], 1)
        return self.task.predict(self.decode(image, self.codes_from_indices(flat), self.prefix_keep(b, k, image.device)))

    @torch.no_grad()
    def oracle_predict(self, image: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """The stage-I ("oracle") prediction from the code the oracle makes of ``target``, and that code."""
        if self.config.no_code:
            return self.predict(image), None
        q = self.encode(image, target)
        return self.task.predict(self.decode(image, q.z_q)), q.indices
