"""Load recipes/train_tokenizer.py by path (recipes are scripts, not a package) and run it in-process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "train_tokenizer.py"
CONFIGS = ROOT / "recipes" / "configs"


def load_recipe():
    if "fsqtok_recipe_train_tokenizer" in sys.modules:
        return sys.modules["fsqtok_recipe_train_tokenizer"]
    spec = importlib.util.spec_from_file_location("fsqtok_recipe_train_tokenizer", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reset_accelerate() -> None:
    """Accelerate keeps process-wide singletons; each in-process run starts from a clean slate."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(scope="session")
def recipe():
    return load_recipe()


@pytest.fixture
def run_recipe(recipe):
    """``run_recipe(config, *overrides, resume=None) -> exit code`` (TensorBoard and media off for speed)."""

    def run(config: str, *overrides: str, resume: str | None = None) -> int:
        reset_accelerate()
        argv = ["--config", str(CONFIGS / config), "log.tensorboard=false", *overrides]
        if resume is not None:
            argv += ["--resume", resume] if resume != "latest" else ["--resume"]
        try:
            return recipe.main(argv)
        finally:
            reset_accelerate()

    return run
