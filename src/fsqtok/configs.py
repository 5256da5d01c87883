"""The config base of every fsqtok model: a frozen dataclass whose fields are the model's config.json.

Tokenizer configs (:class:`fsqtok.tokenizers.TokenizerConfig`) and the generative models' configs
(MaskGIT, UViM) derive from :class:`ModelConfig`. Validation helpers raise one-line
:class:`fsqtok.hub.ConfigError` messages naming the field; ``from_dict`` refuses unknown fields, so
a config.json written for another model is an error. Configs are frozen: build a variant with
``dataclasses.replace(config, field=value)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any, TypeVar

from .hub import ConfigError

C = TypeVar("C", bound="ModelConfig")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base class: subclasses declare fields with defaults and validate them in ``__post_init__``."""

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{name}: {message}")

    def _check_int(self, name: str, minimum: int | None = None) -> int:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail(name, f"expected an int, got {value!r}")
        if minimum is not None and value < minimum:
            self._fail(name, f"must be >= {minimum}, got {value}")
        return value

    def _check_float(self, name: str, lo: float | None = None, hi: float | None = None,
                     lo_open: bool = False) -> float:
        """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), stored back as float."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self._fail(name, f"expected a finite number, got {value!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            self._fail(name, f"must be {'>' if lo_open else '>='} {lo:g}, got {value}")
        if hi is not None and value > hi:
            self._fail(name, f"must be <= {hi:g}, got {value}")
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
        """A non-empty sequence of ints >= ``minimum`` (or bools with ``element=bool``), stored back as a tuple."""
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

    def _check_strs(self, name: str) -> tuple[str, ...]:
        value = getattr(self, name)
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            self._fail(name, f"expected a list of strings, got {value!r}")
        object.__setattr__(self, name, tuple(value))
        return tuple(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready field values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build and validate; unknown fields are an error, missing ones take their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)
