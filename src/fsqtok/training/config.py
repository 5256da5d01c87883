"""Recipe configs: a YAML file of nested sections plus ``key=value`` overrides, checked against defaults.

The recipe owns its defaults (a nested dict); this module only merges and checks, so a config
file or an override naming a key the recipe does not know is a one-line error with a suggestion::

    cfg = load_config("recipes/configs/image/image_debug.yaml", ["optim.lr=3e-4", "max_steps=10"], defaults)
    cfg.optim.lr, cfg["max_steps"]

Values are parsed as YAML (``levels=[8,5,5,5]``, ``push_to_hub=true``, ``hub_model_id=null``).
A value whose default is a float also accepts an int or a number string such as ``1e-3``
(which YAML 1.1 reads as a string); otherwise a value must have its default's type unless that
default is ``None``.

Types are checked on load; ranges are checked by the recipe with :class:`ConfigChecks` before
its first step, so that every bad value is reported at once, one line each::

    checks = ConfigChecks(cfg)
    checks.positive("max_steps", "log.every", "data.batch_size")
    checks.choice("optim.schedule", ("cosine", "linear", "constant"))
    checks.done()   # raises RecipeConfigError with one line per problem
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class RecipeConfigError(ValueError):
    """An invalid recipe config or override; the message names the key."""


class Config(dict):
    """A nested ``dict`` whose keys can also be read as attributes (``cfg.optim.lr``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (for YAML dumps and hyper-parameter logging)."""
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def _wrap(value: Any) -> Any:
    return Config({k: _wrap(v) for k, v in value.items()}) if isinstance(value, Mapping) else value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> ``(["optim", "lr"], "3e-4")`` with the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeConfigError(f"override {text!r}: expected key=value (e.g. max_steps=100)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise RecipeConfigError(f"override {text!r}: value is not valid YAML ({str(e).splitlines()[0]})") from None
    return key.strip().split("."), value


def _coerce(path: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default`` (see module docstring)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RecipeConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise RecipeConfigError(f"{path}: expected a number, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise RecipeConfigError(f"{path}: expected a string, got {value!r}")
    if isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise RecipeConfigError(f"{path}: expected a list, got {value!r}")
    return value


def _unknown(path: str, key: str, known: Iterable[str]) -> RecipeConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {(path + '.' if path else '') + close[0]!r}?" if close else ""
    where = f"section {path!r}" if path else "the config"
    return RecipeConfigError(f"unknown key {(path + '.' if path else '') + key!r} in {where}{hint}")


def _merge(base: dict[str, Any], update: Mapping[str, Any], path: str = "") -> None:
    """Merge ``update`` into ``base`` in place, checking every key and value against ``base``."""
    for key, value in update.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in base:
            raise _unknown(path, str(key), base)
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise RecipeConfigError(f"{full}: expected a section (mapping), got {value!r}")
            _merge(base[key], value, full)
        else:
            base[key] = _coerce(full, value, base[key])


def set_key(config: dict[str, Any], keys: list[str], value: Any) -> None:
    """Apply one override ``a.b.c=value`` to a nested dict, checking the key exists."""
    node, path = config, ""
    for k in keys[:-1]:
        if not isinstance(node, dict) or k not in node:
            raise _unknown(path, k, node if isinstance(node, dict) else {})
        node, path = node[k], f"{path}.{k}" if path else k
    if not isinstance(node, dict):
        raise RecipeConfigError(f"{path}: is a value, not a section; cannot set {'.'.join(keys)}")
    _merge(node, {keys[-1]: value}, path)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file as a dict (an empty file is ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RecipeConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def load_config(
    path: str | Path | None, overrides: Iterable[str] = (), defaults: Mapping[str, Any] | None = None
) -> Config:
    """Defaults, then the YAML file, then ``key=value`` overrides; unknown keys are errors.

    Args:
        path: a YAML file, or ``None`` for the defaults alone.
        overrides: ``"section.key=value"`` strings, applied in order.
        defaults: the complete nested dict of known keys and their default values.
    """
    config = copy.deepcopy(dict(defaults or {}))
    if path is not None:
        try:
            _merge(config, read_yaml(path))
        except RecipeConfigError as e:
            raise RecipeConfigError(f"{path}: {e}") from None
    for text in overrides:
        keys, value = parse_override(text)
        try:
            set_key(config, keys, value)
        except RecipeConfigError as e:
            raise RecipeConfigError(f"override {text!r}: {e}") from None
    return _wrap(config)


class ConfigChecks:
    """Collects range and choice problems of a loaded config; :meth:`done` raises them together.

    Each method takes dotted key names (``"optim.lr"``); a problem becomes one line naming the key,
    its value and what it must be.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.errors: list[str] = []

    def get(self, key: str) -> Any:
        node: Any = self.config
        for part in key.split("."):
            node = node[part]
        return node

    def error(self, message: str) -> None:
        """Record a problem that the helpers below do not cover."""
        self.errors.append(message)

    def _each(self, keys: tuple[str, ...], ok, must: str) -> None:
        for key in keys:
            value = self.get(key)
            if not ok(value):
                self.error(f"{key}={value!r}: must be {must}")

    def positive(self, *keys: str) -> None:
        """Numbers > 0."""
        self._each(keys, lambda v: _number(v) and v > 0, "> 0")

    def non_negative(self, *keys: str) -> None:
        """Numbers >= 0."""
        self._each(keys, lambda v: _number(v) and v >= 0, ">= 0")

    def in_range(self, key: str, low: float, high: float, *, high_open: bool = False) -> None:
        """``low <= value <= high`` (``< high`` when ``high_open``)."""
        bracket = ")" if high_open else "]"
        self._each((key,), lambda v: _number(v) and low <= v and (v < high if high_open else v <= high),
                   f"in [{low}, {high}{bracket}")

    def choice(self, key: str, options: tuple[str, ...]) -> None:
        self._each((key,), lambda v: v in options, "one of " + ", ".join(options))

    def done(self) -> None:
        """Raise :class:`RecipeConfigError` (one line per problem) if any check failed."""
        if self.errors:
            raise RecipeConfigError("\n".join(self.errors))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
