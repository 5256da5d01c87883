"""The records every tokenizer shares: the config base (bottleneck fields and one-line validation),
the forward output, and the chunking helper of the streaming encoders.

Split from :mod:`fsqtok.tokenizers.base` so that the encode/decode template there stays short.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor

from ..hub import ConfigError
from ..quantizers import QuantizerOutput
from ..quantizers.fsq import validate_levels

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
    # "vq": EMA usage below which a code is re-seeded from the batch (dead-code restarts; 0 = off)
    vq_dead_code_threshold: float = 0.0

    def __post_init__(self) -> None:
        self._check_choice("quantizer", ("fsq", "rfsq", "vq"))
        self._check_choice("residual_stage_scale", ("grid", "levels"))
        self._check_float("vq_dead_code_threshold", positive=False)
        if self.vq_dead_code_threshold < 0:
            self._fail("vq_dead_code_threshold", f"must be >= 0, got {self.vq_dead_code_threshold}")
        if self.quantizer != "vq" and self.vq_dead_code_threshold > 0:
            self._fail("vq_dead_code_threshold", "needs quantizer='vq'")
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
