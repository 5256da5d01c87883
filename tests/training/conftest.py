"""A fresh single-process CPU Accelerator per test (Accelerate keeps process-wide singletons)."""

from __future__ import annotations

import pytest


def reset_accelerate() -> None:
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture
def make_accelerator():
    """``make_accelerator(output_dir, **build_accelerator kwargs) -> Accelerator`` (TensorBoard off)."""
    from fsqtok.training import build_accelerator

    def make(output_dir, **kw):
        reset_accelerate()
        kw.setdefault("tensorboard", False)
        return build_accelerator(output_dir, **kw)

    yield make
    reset_accelerate()
