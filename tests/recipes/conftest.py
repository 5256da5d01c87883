"""Load a recipe by path (recipes are scripts, not a package) and run it in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_utils import load_recipe, reset_accelerate

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "configs"


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
