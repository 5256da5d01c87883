"""Helpers of the recipe tests: load a recipe by path (recipes are scripts, not a package) and reset
Accelerate's process-wide state between in-process runs. A plain module (not conftest) so that
test files import it by a name no other test folder uses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_recipe(name: str = "train_tokenizer"):
    """``recipes/<name>.py`` as the module ``fsqtok_recipe_<name>`` (loaded once per session)."""
    if f"fsqtok_recipe_{name}" in sys.modules:
        return sys.modules[f"fsqtok_recipe_{name}"]
    spec = importlib.util.spec_from_file_location(f"fsqtok_recipe_{name}", ROOT / "recipes" / f"{name}.py")
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


def tokenize_labelled_folder(tok_dir: Path, data: Path, shards: Path, capsys):
    """``fsqtok tokenize`` of ``data`` (class sub-folders) with the tokenizer at ``tok_dir``, batches of 4;
    the shards as a :class:`~fsqtok.shards.ShardDataset`."""
    from fsqtok.cli import main as cli_main
    from fsqtok.shards import ShardDataset

    code = cli_main(["tokenize", "--tokenizer", str(tok_dir), "--data", str(data), "--output", str(shards),
                     "--labels", "folder", "--batch-size", "4", "--quiet"])
    assert code == 0, capsys.readouterr().err
    return ShardDataset(shards)


def train_maskgit_on(shards: Path, out: Path, capsys):
    """Two steps of recipes/train_maskgit.py's debug config on ``shards``; the saved MaskGIT."""
    from fsqtok.generative import MaskGIT

    recipe = load_recipe("train_maskgit")
    reset_accelerate()
    try:
        code = recipe.main(["--config", str(ROOT / "recipes" / "configs" / "maskgit" / "fashion_mnist_debug.yaml"),
                            f"output_dir={out}", "max_steps=2", "data.debug_images=0", f"data.train={shards}",
                            "log.tensorboard=false"])
    finally:
        reset_accelerate()
    assert code == 0, capsys.readouterr().err
    return MaskGIT.from_pretrained(out / "maskgit")
