"""ConfigChecks: every range and choice problem of a config, one line each, reported together."""

from __future__ import annotations

import pytest

from fsqtok.training import ConfigChecks, RecipeConfigError, load_config

DEFAULTS = {"max_steps": 10, "log": {"every": 1, "media_every": 0}, "optim": {"schedule": "cosine", "decay": 0.5}}


def test_all_problems_are_reported_together():
    cfg = load_config(None, ["max_steps=-1", "log.every=0", "log.media_every=-2", "optim.schedule=step",
                             "optim.decay=1.0"], DEFAULTS)
    c = ConfigChecks(cfg)
    c.positive("max_steps", "log.every")
    c.non_negative("log.media_every")
    c.choice("optim.schedule", ("cosine", "linear"))
    c.in_range("optim.decay", 0.0, 1.0, high_open=True)
    c.error("custom problem")
    with pytest.raises(RecipeConfigError) as e:
        c.done()
    assert str(e.value).splitlines() == [
        "max_steps=-1: must be > 0",
        "log.every=0: must be > 0",
        "log.media_every=-2: must be >= 0",
        "optim.schedule='step': must be one of cosine, linear",
        "optim.decay=1.0: must be in [0.0, 1.0)",
        "custom problem",
    ]


def test_valid_config_passes():
    c = ConfigChecks(load_config(None, [], DEFAULTS))
    c.positive("max_steps", "log.every")
    c.non_negative("log.media_every")
    c.in_range("optim.decay", 0.0, 1.0)
    c.choice("optim.schedule", ("cosine",))
    c.done()
    assert c.errors == []


def test_non_numbers_fail_numeric_checks():
    c = ConfigChecks({"a": None, "b": True, "c": float("nan")})
    c.positive("a", "b", "c")
    assert len(c.errors) == 3
