"""What every tokenizer shares: the encode/decode/forward template and input checks (the config
base and output record are in :mod:`fsqtok.tokenizers.config`). Hub save/load comes from :class:`fsqtok.hub.HubMixin`.

A tokenizer is ``encoder -> FSQ or residual FSQ -> decoder``. Subclasses supply the networks
and four small hooks (:meth:`Tokenizer._prepare`, :meth:`Tokenizer._restore`,
:meth:`Tokenizer.tokens_shape` and the rate figures); everything else lives here once.

Hub folders hold ``model.safetensors`` and a ``config.json`` with the config's fields plus
``model_type`` (``"<modality>_tokenizer"``), ``modality`` and ``fsqtok_version``; folders written
before model types existed (``modality`` only) still load. Loading is strict (see :mod:`fsqtok.hub`).

Length: about 370 lines, over the ~300 guideline, because it is one class (the template, its input
checks and its Hub hooks), which reads best whole.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..hub import REPO_URL, ConfigError, HubMixin

from ..quantizers import FSQ, QuantizerOutput, ResidualFSQ, VectorQuantizer
from ..quantizers.stats import bits_per_token
from .config import TokenizerConfig, TokenizerOutput

# Pixel values beyond this magnitude are taken for un-normalized input (e.g. uint8 0..255).
_MAX_ABS_PIXEL = 2.0


# --------------------------------------------------------------------------- tokenizer


def inference(fn: Any) -> Any:
    """Decorator of the encode entry points: run under ``torch.inference_mode`` (no autograd or version
    bookkeeping), then hand back an ordinary tensor, so callers may still edit the tokens in place."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Tensor:
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return out.clone()

    return wrapper


class Tokenizer(nn.Module, HubMixin, tags=["fsq", "tokenizer"]):
    """Base class: encoder + FSQ/residual-FSQ bottleneck + decoder, with Hub save/load.

    ``Tokenizer.from_pretrained(path_or_repo_id)`` on this base class returns the subclass
    named by the folder's config.json (same as :func:`load_tokenizer`).
    """

    modality: ClassVar[str] = ""
    config_class: ClassVar[type[TokenizerConfig]] = TokenizerConfig
    layout: ClassVar[str] = ""  # input layout for messages, e.g. "(B, 3, H, W)"
    grid_ndim: ClassVar[int] = 0  # token grid axes after batch (and stage) axes
    axis_names: ClassVar[tuple[str, ...]] = ()  # input axes, for messages

    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = self.config_class()
        if type(config) is not self.config_class:
            raise TypeError(
                f"{type(self).__name__}: config must be {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.latent_channels = config.latent_channels or len(config.levels)
        self.quantizer = self._build_quantizer()

    def _build_quantizer(self) -> nn.Module:
        """The bottleneck that ``config.quantizer`` names; a port whose source quantizes otherwise overrides this."""
        config = self.config
        if config.quantizer == "fsq":
            return FSQ(config.levels, self.latent_channels)
        if config.quantizer == "vq":  # the paper's baseline, at FSQ's codebook size and code width
            return VectorQuantizer(math.prod(config.levels), len(config.levels), self.latent_channels,
                                   dead_code_threshold=config.vq_dead_code_threshold)
        return ResidualFSQ(
            config.levels, config.num_stages, self.latent_channels, quantize_dropout=config.quantize_dropout,
            stage_scale=config.residual_stage_scale,
        )

    # -- hooks for subclasses
    def _prepare(self, x: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Check and convert user input to padded network input; return it and a context for :meth:`_restore`."""
        raise NotImplementedError

    def _restore(self, y: Tensor, ctx: dict[str, Any]) -> Tensor:
        """Network output -> user convention, cropped to ``ctx["input_shape"]`` when it is set."""
        raise NotImplementedError

    def tokens_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the indices that :meth:`encode` returns for an input of ``input_shape``."""
        raise NotImplementedError

    def _rates(self) -> dict[str, Any]:
        """Modality-specific rate figures for :meth:`summary` and the model card."""
        return {}

    def _compression(self) -> str:
        raise NotImplementedError

    def _fold_tokens(self, indices: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """User indices -> bottleneck indices ``(B', [S,] *grid)``; audio folds channels here."""
        return indices, {}

    def _unfold_tokens(self, indices: Tensor, ctx: dict[str, Any]) -> Tensor:
        return indices

    def _input_shape_hint(self) -> str:
        """Appended to decode's shape-mismatch message (audio: the sample rate)."""
        return ""

    @property
    def _extra_token_axes(self) -> int:
        """Axes between batch and stage axes in user indices (audio's channel axis)."""
        return 0

    # -- rates and sizes
    @property
    def num_stages(self) -> int:
        """Residual stages (1 for plain FSQ)."""
        return self.config.num_stages

    @property
    def codebook_size(self) -> int:
        """Codes per stage: ``prod(levels)``."""
        return self.quantizer.codebook_size

    @property
    def bits_per_token(self) -> float:
        """Bits carried by one index (one stage at one position): ``log2(codebook_size)``."""
        return bits_per_token(self.codebook_size)

    def summary(self) -> dict[str, Any]:
        """Modality, size, compression, codebook and rate, for ``fsqtok info`` and model cards."""
        return {
            "modality": self.modality,
            "class": type(self).__name__,
            "input": self.layout,
            "parameters": sum(p.numel() for p in self.parameters()),
            "compression": self._compression(),
            "quantizer": self.config.quantizer,
            "levels": list(self.config.levels),
            "num_stages": self.num_stages,
            "codebook_size": self.codebook_size,
            "bits_per_token": round(self.bits_per_token, 4),
            **self._rates(),
        }

    # -- input and token checks
    def _fail(self, message: str, kind: type[Exception] = ValueError) -> None:
        raise kind(f"{type(self).__name__}: {message}")

    def _check_shape(self, shape: Sequence[int], channels: int | None) -> tuple[int, ...]:
        """Check an input shape against :attr:`layout`; ``channels=None`` accepts any channel count."""
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            self._fail(f"expected an input shape {self.layout}, got {shape!r}", TypeError)
        if len(shape) != self.grid_ndim + 2:
            self._fail(f"expected input {self.layout}, got shape {shape} ({len(shape)} dims)")
        if channels is not None and shape[1] != channels:
            self._fail(f"expected {channels} channel(s) {self.layout}, got {shape[1]} (shape {shape})")
        for name, size in zip(self.axis_names, shape):
            if size < 1:
                self._fail(f"input has {name}={size} (shape {shape}); need {name} >= 1")
        return shape

    def _check_tensor(self, x: Tensor, channels: int | None, allow_nonfinite: bool = False) -> None:
        if not isinstance(x, Tensor):
            self._fail(f"expected a torch.Tensor {self.layout}, got {type(x).__name__}", TypeError)
        if not x.is_floating_point():
            self._fail(f"expected a floating-point tensor, got {x.dtype}", TypeError)
        self._check_shape(x.shape, channels)
        if not allow_nonfinite and not bool(torch.isfinite(x).all()):  # one pass; count only on failure
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            if n_nan or n_inf:
                self._fail(f"input contains {n_nan} NaN and {n_inf} inf value(s)")

    def _check_pixels(self, x: Tensor, channels: int) -> None:
        """:meth:`_check_tensor`, then values must look like [-1, 1] pixels (not uint8 0..255)."""
        self._check_tensor(x, channels)
        lo, hi = (float(v) for v in torch.aminmax(x))
        if lo < -_MAX_ABS_PIXEL or hi > _MAX_ABS_PIXEL:
            self._fail(f"pixel values must be in [-1, 1], got range [{lo:g}, {hi:g}] (map uint8 with x / 127.5 - 1)")

    def check_input(self, x: Tensor) -> None:
        """Raise the one-line error :meth:`encode` gives for input it refuses; convert nothing.
        Image and video also check the pixel range, depth allows NaN/inf (invalid pixels)."""
        self._check_tensor(x, None)

    def _check_tokens(self, indices: Tensor, num_stages: int | None) -> Tensor:
        """Validate user indices and select a stage prefix; returns int64 indices."""
        if not isinstance(indices, Tensor):
            self._fail(f"indices must be a torch.Tensor, got {type(indices).__name__}", TypeError)
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            self._fail(f"indices must be an integer tensor, got {indices.dtype}", TypeError)
        residual = self.config.quantizer == "rfsq"
        ndim = 1 + self._extra_token_axes + int(residual) + self.grid_ndim
        if indices.ndim != ndim or indices.numel() == 0:
            self._fail(
                f"expected non-empty indices with {ndim} dims {self._tokens_layout()}, got shape {tuple(indices.shape)}"
            )
        indices = indices.long()
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= self.codebook_size:
            self._fail(f"indices must lie in [0, {self.codebook_size}), got min {lo}, max {hi}")
        if residual:
            axis = 1 + self._extra_token_axes
            available = indices.shape[axis]
            if available > self.num_stages:
                self._fail(f"indices have {available} stages, the model has {self.num_stages}")
            if num_stages is not None:
                if not 1 <= num_stages <= available:
                    self._fail(f"num_stages must be in [1, {available}], got {num_stages}")
                indices = indices.narrow(axis, 0, num_stages)
        elif num_stages not in (None, 1):
            self._fail(f"num_stages={num_stages} needs a residual quantizer (config.quantizer='rfsq')")
        return indices

    def _check_input_shape(self, indices: Tensor, input_shape: Sequence[int] | None) -> tuple[int, ...] | None:
        """``input_shape`` as ints, after checking that ``indices`` (any stage prefix) come from it."""
        if input_shape is None:
            return None
        expected = self.tokens_shape(input_shape)
        got = tuple(indices.shape)
        if self.config.quantizer == "rfsq":  # a stage prefix is fine
            axis = 1 + self._extra_token_axes
            expected = expected[:axis] + expected[axis + 1 :]
            got = got[:axis] + got[axis + 1 :]
        if got != expected:
            self._fail(
                f"indices of shape {tuple(indices.shape)} do not come from an input of shape "
                f"{tuple(input_shape)}{self._input_shape_hint()}"
            )
        return tuple(int(s) for s in input_shape)

    def _tokens_layout(self) -> str:
        grid = {1: "N", 2: "h, w", 3: "t, h, w"}[self.grid_ndim]
        extra = ", C" if self._extra_token_axes else ""
        stage = ", S" if self.config.quantizer == "rfsq" else ""
        return f"(B{extra}{stage}, {grid})"

    def _tokens_for_grid(self, batch: tuple[int, ...], grid: Sequence[int]) -> tuple[int, ...]:
        stage = (self.num_stages,) if self.config.quantizer == "rfsq" else ()
        return (*batch, *stage, *grid)

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype

    # -- the three entry points
    @contextlib.contextmanager
    def _all_stages(self) -> Iterator[None]:
        """Quantize dropout is for training forwards only: tokens always carry every stage."""
        was_training = self.quantizer.training
        self.quantizer.eval()
        try:
            yield
        finally:
            self.quantizer.train(was_training)

    def _quantize(self, z: Tensor) -> Tensor:
        with self._all_stages():
            return self.quantizer(z).indices

    @inference
    def encode(self, x: Tensor) -> Tensor:
        """Input in this modality's convention -> int64 indices of shape :meth:`tokens_shape`."""
        return self._encode_prepared(*self._prepare(x))

    def _encode_prepared(self, x_net: Tensor, ctx: dict[str, Any]) -> Tensor:
        return self._unfold_tokens(self._quantize(self.encoder(x_net)), ctx)

    @torch.inference_mode()
    def decode(
        self, indices: Tensor, *, input_shape: Sequence[int] | None = None, num_stages: int | None = None
    ) -> Tensor:
        """Indices -> tensor in this modality's convention (runs under ``torch.inference_mode``).

        Args:
            indices: int64 tokens as :meth:`encode` returns them.
            input_shape: the shape given to :meth:`encode`; the output is cropped to it (without
                it the output covers the padded size, a multiple of the compression).
            num_stages: residual quantizer only: decode from the first ``num_stages`` stages.
        """
        indices = self._check_tokens(indices, num_stages)
        ctx: dict[str, Any] = {"input_shape": self._check_input_shape(indices, input_shape)}
        flat, fold_ctx = self._fold_tokens(indices)
        ctx.update(fold_ctx)
        return self._restore(self._decode_net(flat), ctx)

    def _decode_net(self, indices: Tensor) -> Tensor:
        """Bottleneck indices ``(B', [S,] *grid)`` -> network output (audio: in fixed blocks)."""
        return self.decoder(self.quantizer.decode_indices(indices).to(self._dtype))

    def compile(self, **kwargs: Any) -> "Tokenizer":  # type: ignore[override]
        """Opt in to ``torch.compile`` for :meth:`encode` and :meth:`decode`: compiles the encoder and the
        decoder in place (the first call at each input shape compiles, which takes seconds to minutes)
        and returns ``self``. ``kwargs`` go to ``torch.compile``. The tokens are eager mode's (tested
        on real media; a fused kernel may round a latent differently, so at most a few in 10^5 move).
        On CPU eager mode is faster for every modality (0.13-0.85x compiled, BENCHMARKS.md): inductor
        does not beat oneDNN's convs, nor the audio streams' stacked blocks, which it cannot trace;
        it is there for GPUs, where it was not measured."""
        self.encoder.compile(**kwargs)
        self.decoder.compile(**kwargs)
        return self

    def forward(self, x: Tensor) -> TokenizerOutput:
        """Encode, quantize (with quantize dropout when training) and decode; for training and evaluation."""
        return self._forward_prepared(*self._prepare(x))

    def _forward_prepared(self, x_net: Tensor, ctx: dict[str, Any]) -> TokenizerOutput:
        q = self.quantizer(self.encoder(x_net))
        y = self.decoder(q.z_q)
        return self._output(self._restore(y, ctx), y, q, ctx)

    def _output(self, reconstruction: Tensor, y: Tensor, q: QuantizerOutput, ctx: dict[str, Any]) -> TokenizerOutput:
        return TokenizerOutput(
            reconstruction=reconstruction,
            quantizer_loss=q.loss,
            quantizer_output=q,
            unfold=functools.partial(self._unfold_tokens, ctx=ctx),
        )

    # -- Hub (save/load, strictness and weights_hash come from HubMixin)
    def hub_config(self) -> dict[str, Any]:
        """The content of config.json: ``model_type``, ``modality``, ``fsqtok_version`` and every config field."""
        return {**super().hub_config(), "modality": self.modality}

    @classmethod
    def config_from_hub(cls, raw: dict[str, Any], source: str) -> TokenizerConfig:
        """config.json -> config; its ``modality``, when present, must be this class's."""
        modality = raw.get("modality", cls.modality)
        if modality != cls.modality:
            raise ConfigError(
                f"{source}: config.json: modality {modality!r} does not match model_type {cls.model_type!r}"
            )
        fields = {k: v for k, v in raw.items() if k != "modality"}
        if fields.get("quantizer") == "rfsq" and "residual_stage_scale" not in fields:
            fields["residual_stage_scale"] = "levels"  # saved before the field existed: keep its tokens' meaning
        return super().config_from_hub(fields, source)

    def card_tags(self) -> tuple[str, ...]:
        return ("fsq", "tokenizer", self.modality)

    def model_card_body(self, repo_id: str) -> str:
        """A model card stating the modality, compression, codebook and rate."""
        info = self.summary()
        rows = "\n".join(f"| {k.replace('_', ' ')} | {_card_value(v)} |" for k, v in info.items())
        return (
            f"# fsqtok {self.modality} tokenizer\n\n"
            f"A discrete {self.modality} tokenizer from [fsqtok]({REPO_URL}): a conv encoder, a "
            f"{'residual ' if self.config.quantizer == 'rfsq' else ''}finite scalar quantization (FSQ) "
            "bottleneck and a conv decoder.\n\n"
            "| property | value |\n| --- | --- |\n"
            f"{rows}\n\n"
            "## Usage\n\n"
            "```python\nimport fsqtok\n\n"
            f'tokenizer = fsqtok.load_tokenizer("{repo_id}")\n'
            f"{self._card_usage()}\n```\n"
        )

    def _card_usage(self) -> str:
        """The model card's encode/decode lines."""
        return "indices = tokenizer.encode(x)\nx_hat = tokenizer.decode(indices, input_shape=x.shape)"


def _card_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def load_tokenizer(path_or_repo_id: str | Path, **kwargs: Any) -> Tokenizer:
    """Load any fsqtok tokenizer; config.json's model type (or, in older folders, ``modality``) picks the class.

    ``kwargs`` are those of :meth:`fsqtok.hub.HubMixin.from_pretrained` (``revision``, ``cache_dir``,
    ``local_files_only``, ``token``, ``force_download``, ``map_location``).
    """
    return Tokenizer.from_pretrained(path_or_repo_id, **kwargs)
