"""What every tokenizer shares: the config base, the output record, the encode/decode/forward
template and input checks. Hub save/load comes from :class:`fsqtok.hub.HubMixin`.

A tokenizer is ``encoder -> FSQ or residual FSQ -> decoder``. Subclasses supply the networks
and four small hooks (:meth:`Tokenizer._prepare`, :meth:`Tokenizer._restore`,
:meth:`Tokenizer.tokens_shape` and the rate figures); everything else lives here once.

Hub folders hold ``model.safetensors`` and a ``config.json`` with the config's fields plus
``model_type`` (``"<modality>_tokenizer"``), ``modality`` and ``fsqtok_version``; folders written
before model types existed (``modality`` only) still load. Loading is strict (see :mod:`fsqtok.hub`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from ..hub import REPO_URL, CheckpointError, ConfigError, HubMixin

from ..quantizers import FSQ, QuantizerOutput, ResidualFSQ, VectorQuantizer
from ..quantizers.fsq import validate_levels
from ..quantizers.stats import bits_per_token

C = TypeVar("C", bound="TokenizerConfig")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TokenizerConfig:
    """Bottleneck fields shared by every modality's config. Subclasses add their network fields.

    Configs are frozen: build a variant with ``dataclasses.replace(config, field=value)``.
    """

    quantizer: str = "fsq"  # "fsq", "rfsq" (residual FSQ) or "vq" (VQ-VAE baseline: prod(levels) codes of dim len(levels))
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels per channel; codebook = prod(levels)
    num_stages: int = 1  # residual stages; must be 1 for "fsq"
    quantize_dropout: bool = False  # "rfsq": train on a random prefix of stages (bitrate chosen at decode)
    latent_channels: int | None = None  # encoder output width; None = len(levels) (no projection)
    # "rfsq": scale of stage i. "grid": r^-i with r the largest ratio the grid covers (L, or L-1 for even L),
    # so every level list converges; "levels": L^-i, for tokenizers saved before fsqtok 0.1.1 (see ResidualFSQ)
    residual_stage_scale: str = "grid"

    def __post_init__(self) -> None:
        self._check_choice("quantizer", ("fsq", "rfsq", "vq"))
        self._check_choice("residual_stage_scale", ("grid", "levels"))
        levels = self._check_ints("levels", minimum=2)
        try:
            validate_levels(levels, eps=1e-3, symmetric=False)
        except (TypeError, ValueError) as e:
            self._fail("levels", str(e).removeprefix("FSQ: "))
        self._check_int("num_stages", minimum=1)
        self._check_bool("quantize_dropout")
        if self.quantizer != "rfsq" and self.num_stages != 1:
            self._fail("num_stages", f"must be 1 for quantizer={self.quantizer!r}, got {self.num_stages} (use quantizer='rfsq')")
        if self.quantizer != "rfsq" and self.quantize_dropout:
            self._fail("quantize_dropout", "needs quantizer='rfsq'")
        if self.latent_channels is not None:
            self._check_int("latent_channels", minimum=1)

    # -- validation helpers (each raises a one-line ConfigError naming the field)
    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{name}: {message}")

    def _check_int(self, name: str, minimum: int | None = None) -> int:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail(name, f"expected an int, got {value!r}")
        if minimum is not None and value < minimum:
            self._fail(name, f"must be >= {minimum}, got {value}")
        return value

    def _check_float(self, name: str, positive: bool = True) -> float:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self._fail(name, f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            self._fail(name, f"must be > 0, got {value}")
        object.__setattr__(self, name, float(value))
        return float(value)

    def _check_bool(self, name: str) -> bool:
        value = getattr(self, name)
        if not isinstance(value, bool):
            self._fail(name, f"expected true/false, got {value!r}")
        return value

    def _check_choice(self, name: str, choices: Sequence[str]) -> str:
        value = getattr(self, name)
        if value not in choices:
            self._fail(name, f"must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
        return value

    def _check_ints(self, name: str, minimum: int = 1, element: type = int) -> tuple:
        """A non-empty sequence of ints (or bools with ``element=bool``), stored back as a tuple."""
        value = getattr(self, name)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
            self._fail(name, f"expected a non-empty list, got {value!r}")
        for v in value:
            if element is bool:
                if not isinstance(v, bool):
                    self._fail(name, f"expected a list of true/false, got {list(value)!r}")
            elif isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                self._fail(name, f"expected a list of ints >= {minimum}, got {list(value)!r}")
        object.__setattr__(self, name, tuple(value))
        return tuple(value)

    # -- (de)serialization
    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build and validate a config; unknown fields are an error, missing ones take their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------- outputs


@dataclass
class TokenizerOutput:
    """What ``Tokenizer.forward`` returns.

    Attributes:
        reconstruction: decoded input, in the input's convention and shape.
        quantizer_loss: scalar auxiliary loss of the bottleneck (0 for FSQ).
        quantizer_output: the bottleneck's raw output (``z_q``, per-call usage statistics).
        unfold: bottleneck indices -> the layout :meth:`Tokenizer.encode` returns.

    :attr:`indices` is read on demand from ``quantizer_output``, so a training step never waits
    for it, and reading it raises the quantizer's error when the latents were not finite.
    """

    reconstruction: Tensor
    quantizer_loss: Tensor
    quantizer_output: QuantizerOutput
    unfold: Callable[[Tensor], Tensor] = lambda indices: indices

    @property
    def indices(self) -> Tensor:
        """int64 tokens, as :meth:`Tokenizer.encode` returns them."""
        return self.unfold(self.quantizer_output.indices)

    def usage(self) -> float:
        """Fraction of the codebook used in this batch (computed on demand)."""
        return self.quantizer_output.usage()

    def perplexity(self) -> float:
        """Perplexity of this batch's codes (computed on demand)."""
        return self.quantizer_output.perplexity()


# --------------------------------------------------------------------------- streaming helper


def chunk_sizes(total: int, first: int, rest: int) -> list[int]:
    """Split ``total`` steps into a first chunk of ``first`` and then chunks of ``rest`` (last may be short)."""
    sizes, done, size = [], 0, first
    while done < total:
        sizes.append(min(size, total - done))
        done += sizes[-1]
        size = rest
    return sizes


# --------------------------------------------------------------------------- tokenizer


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
        if config.quantizer == "fsq":
            self.quantizer: FSQ | ResidualFSQ | VectorQuantizer = FSQ(config.levels, self.latent_channels)
        elif config.quantizer == "vq":  # the paper's baseline, at FSQ's codebook size and code width
            self.quantizer = VectorQuantizer(math.prod(config.levels), len(config.levels), self.latent_channels)
        else:
            self.quantizer = ResidualFSQ(
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
        if not allow_nonfinite:
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            if n_nan or n_inf:
                self._fail(f"input contains {n_nan} NaN and {n_inf} inf value(s)")

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

    @torch.no_grad()
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
        ctx: dict[str, Any] = {"input_shape": None}
        if input_shape is not None:
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
            ctx["input_shape"] = tuple(int(s) for s in input_shape)
        flat, fold_ctx = self._fold_tokens(indices)
        ctx.update(fold_ctx)
        z_q = self.quantizer.decode_indices(flat).to(self._dtype)
        return self._restore(self.decoder(z_q), ctx)

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
