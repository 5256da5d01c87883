"""Every recipe YAML loads and builds; overrides and unknown keys behave as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from fsqtok.losses import TokenizerLoss, TokenizerLossConfig
from fsqtok.training import RecipeConfigError, build_scheduler, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"

TOKENIZER_DIRS = ("image", "depth", "audio", "video")  # train_tokenizer.py's; other recipes test their own configs
ALL = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml")
             if p.relative_to(CONFIGS).parts[0] in TOKENIZER_DIRS)


def test_configs_found():
    assert {p.split("/")[0] for p in ALL} == set(TOKENIZER_DIRS)


@pytest.mark.parametrize("name", ALL)
def test_config_loads_and_builds(recipe, name, tmp_path):
    path = CONFIGS / name
    head = path.read_text().splitlines()[:3]
    assert head[0].startswith("#"), "a config opens with a comment giving its launch command"
    assert any(f"recipes/train_tokenizer.py --config recipes/configs/{name}" in line for line in head if line.startswith("#"))
    raw = yaml.safe_load(path.read_text())
    assert {"output_dir", "max_steps", "seed"} <= set(raw)
    cfg = recipe.load_recipe_config(str(path), [f"output_dir={tmp_path / 'run'}"])
    assert cfg.modality == name.split("/")[0]
    tokenizer = recipe.build_tokenizer(cfg)
    TokenizerLoss(cfg.modality, TokenizerLossConfig(**cfg.loss), cfg.tokenizer.get("sample_rate", 16000))
    build_scheduler(torch.optim.SGD(tokenizer.parameters(), lr=cfg.optim.lr), cfg.optim, cfg.max_steps)
    assert recipe.check_config(cfg, resume=None, overwrite=False) is None  # every range is valid
    if not name.endswith("_debug.yaml"):
        assert (CONFIGS / name.replace(".yaml", "_debug.yaml")).exists(), "every config has a *_debug.yaml twin"


def test_overrides_are_typed(recipe):
    cfg = recipe.load_recipe_config(
        str(CONFIGS / "image/image_debug.yaml"),
        ["optim.lr=3e-4", "max_steps=7", "tokenizer.levels=[8,5,5]", "push_to_hub=true", "hub_model_id=me/tok"],
    )
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.max_steps == 7 and cfg.push_to_hub is True and cfg.hub_model_id == "me/tok"
    assert recipe.build_tokenizer(cfg).codebook_size == 200


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "did you mean 'optim.lr'"),
        ("nonsense=1", "unknown key 'nonsense'"),
        ("tokenizer.bogus=3", "unknown key 'tokenizer.bogus'"),
        ("max_steps=ten", "max_steps: expected an integer"),
        ("optim=3", "expected a section"),
        ("max_steps", "expected key=value"),
    ],
)
def test_bad_overrides_are_errors(recipe, override, message):
    with pytest.raises(RecipeConfigError, match=message):
        recipe.load_recipe_config(str(CONFIGS / "image/image_debug.yaml"), [override])


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 3\noptim:\n  lr: 1.0\n  warmup: 5\n")
    with pytest.raises(RecipeConfigError, match="unknown key 'optim.warmup'"):
        load_config(path, [], {"max_steps": 1, "optim": {"lr": 0.1, "warmup_steps": 0}})


def test_invalid_tokenizer_value_is_an_error(recipe, tmp_path):
    cfg = recipe.load_recipe_config(str(CONFIGS / "image/image_debug.yaml"),
                                    ["tokenizer.quantizer=nope", f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(RecipeConfigError, match="^tokenizer: ImageConfig.quantizer"):
        recipe.check_config(cfg, resume=None, overwrite=False)
