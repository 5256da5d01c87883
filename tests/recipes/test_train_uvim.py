"""recipes/train_uvim.py end to end on the tiny debug configs (in-process, seconds each): both stages for
every task, exact resume, the stage-II folder naming its stage-I model, and config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from fsqtok.generative.uvim.stage1 import UViMStage1
from fsqtok.generative.uvim.lm import UViMLM, UViMPipeline
from fsqtok.hub import load_pretrained
from recipe_utils import load_recipe, reset_accelerate

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "configs" / "uvim"
ALL = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("train_uvim")


@pytest.fixture
def run(recipe):
    def go(config: str, *overrides: str, resume: bool = False) -> int:
        reset_accelerate()
        argv = ["--config", str(CONFIGS / config), "log.tensorboard=false", *overrides, *(["--resume"] if resume else [])]
        try:
            return recipe.main(argv)
        finally:
            reset_accelerate()
    return go


def rows(out: Path, kind: str) -> list[dict]:
    return [d for d in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if d["kind"] == kind]


@pytest.mark.parametrize("name", ALL)
def test_every_config_loads_and_checks(recipe, name, tmp_path):
    text = (CONFIGS / name).read_text()
    assert f"recipes/train_uvim.py --config recipes/configs/uvim/{name}" in "\n".join(text.splitlines()[:4])
    raw = yaml.safe_load(text)
    assert {"stage", "task", "output_dir", "max_steps", "seed"} <= set(raw) and name.startswith(raw["task"])
    cfg = recipe.load_config(str(CONFIGS / name), [f"output_dir={tmp_path}"], recipe.DEFAULTS)
    if cfg.stage == 1:
        assert recipe.check_config(cfg, None, False) is None
        recipe.build_stage1(cfg)
    if not name.endswith("_debug.yaml"):
        assert (CONFIGS / name.replace(".yaml", "_debug.yaml")).exists()


@pytest.mark.parametrize("task", ["depth", "colorization", "panoptic"])
def test_debug_stage1_then_stage2_two_steps(run, tmp_path, task):
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert run(f"{task}_stage1_debug.yaml", f"output_dir={s1}") == 0
    stage1 = load_pretrained(s1 / "model")
    assert isinstance(stage1, UViMStage1) and stage1.config.task == task
    assert [r["step"] for r in rows(s1, "train")] == [1, 2]
    ev = rows(s1, "eval")[-1]
    assert {"depth": "rmse", "colorization": "psnr", "panoptic": "pq"}[task] in ev and "codebook_usage" in ev
    assert (s1 / "checkpoints" / "step-000002" / "DONE").exists()
    assert run(f"{task}_stage2_debug.yaml", f"output_dir={s2}", f"stage1={s1 / 'model'}") == 0
    cfg = json.loads((s2 / "model" / "config.json").read_text())
    assert cfg["model_type"] == "uvim_lm" and cfg["stage1"] == "stage1"
    assert cfg["stage1_hash"] == stage1.weights_hash()  # names the stage-I weights it was trained on
    pipe = UViMPipeline.from_pretrained(s2 / "model")
    assert isinstance(pipe.lm, UViMLM) and "token_accuracy" in rows(s2, "eval")[-1]
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert pipe.predict(x)[1].shape == (2, 4)


def test_stage2_with_the_stage1_stem_starts_from_the_stage1_trunk(run, tmp_path):
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert run("depth_stage1_debug.yaml", f"output_dir={s1}") == 0
    # lr 1e-12: the saved LM is (to 1e-9) its initialisation, whose stem must be the stage-I base model's trunk
    assert run("depth_stage2_debug.yaml", f"output_dir={s2}", f"stage1={s1 / 'model'}", "lm.stem=stage1",
               "optim.lr=1e-12") == 0
    pipe = UViMPipeline.from_pretrained(s2 / "model")
    assert pipe.lm.config.stem == "stage1" and pipe.lm.config.stem_width == pipe.stage1.config.width
    trunk = pipe.stage1.base_context.state_dict()
    assert all(torch.allclose(v, trunk[k], atol=1e-9) for k, v in pipe.lm.stem.state_dict().items())


def test_resume_is_exact(run, tmp_path):
    common = ["max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=0", "log.media_every=0",
              "model.quantizer=vq_split"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("depth_stage1_debug.yaml", f"output_dir={a}", *common) == 0
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000002", b / "checkpoints" / "step-000002")
    assert run("depth_stage1_debug.yaml", f"output_dir={b}", *common, resume=True) == 0
    la = {r["step"]: r["loss"] for r in rows(a, "train") if r["step"] > 2}
    lb = {r["step"]: r["loss"] for r in rows(b, "train")}
    assert la == lb and set(la) == {3, 4}
    wa = (a / "model" / "model.safetensors").read_bytes()
    assert wa == (b / "model" / "model.safetensors").read_bytes()  # VQ codebook buffers included


def test_config_errors_are_one_line(run, tmp_path, capsys):
    assert run("depth_stage2_debug.yaml", f"output_dir={tmp_path / 'x'}", "stage1=null", "max_steps=0") == 1
    err = capsys.readouterr().err
    assert "stage=2 needs stage1=FOLDER" in err and "max_steps=0: must be > 0" in err  # reported together
    assert run("depth_stage1_debug.yaml", f"output_dir={tmp_path / 'y'}", "model.quantizer=rvq") == 1
    assert "model: UViMConfig.quantizer" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # nothing written before the config is valid
    assert run("depth_stage2_debug.yaml", f"output_dir={tmp_path / 'z'}", f"stage1={tmp_path / 'missing'}") == 1
    assert capsys.readouterr().err.startswith("error: stage1=")


def test_stage1_on_folder_pairs(run, tmp_path):
    import numpy as np
    from fsqtok.media import write_depth, write_image

    data = tmp_path / "pairs"
    for sub in ("image", "depth"):
        (data / sub).mkdir(parents=True)
    for k in range(8):
        write_image(data / "image" / f"{k:02d}.png", torch.rand(3, 24, 24) * 2 - 1)
        write_depth(data / "depth" / f"{k:02d}.npy", torch.full((1, 24, 24), 1.0 + k, dtype=torch.float32))
    out = tmp_path / "run"
    assert run("depth_stage1_debug.yaml", f"output_dir={out}", "data.source=folder", f"data.path={data}") == 0
    # no data.val_path: the metrics are on the training pairs, so they are said and logged as train_set, never eval
    log = (out / "train.log").read_text()
    assert "8 train / no held-out items" in log and "no held-out data (data.val_path is not set)" in log
    assert rows(out, "eval") == [] and np.isfinite(rows(out, "train_set")[-1]["rmse"])
    held = tmp_path / "held"
    assert run("depth_stage1_debug.yaml", f"output_dir={held}", "data.source=folder", f"data.path={data}",
               f"data.val_path={data}") == 0
    assert rows(held, "train_set") == [] and np.isfinite(rows(held, "eval")[-1]["rmse"])
    assert "8 train / 8 val items" in (held / "train.log").read_text()
    assert run("depth_stage1_debug.yaml", f"output_dir={tmp_path / 'bad'}", "data.source=folder") == 1


def test_stage2_resume_refuses_a_retrained_stage1(run, tmp_path, capsys):
    """Issue 17 §2.2: the resume compares the stage-I weights hash, not the stage1= path."""
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    fast = ["log.media_every=0", "log.eval_every=0"]
    assert run("depth_stage1_debug.yaml", f"output_dir={s1}", "max_steps=1", *fast) == 0
    first = load_pretrained(s1 / "model").weights_hash()
    assert run("depth_stage2_debug.yaml", f"output_dir={s2}", f"stage1={s1 / 'model'}", "max_steps=1", *fast) == 0
    saved = yaml.safe_load((s2 / "config.yaml").read_text())["trained_on"]
    model = json.loads((s2 / "model" / "config.json").read_text())["trained_on"]
    assert saved == model and saved["stage1"] == first and set(saved) == {"train_data", "val_data", "stage1"}
    assert run("depth_stage1_debug.yaml", f"output_dir={s1}", "max_steps=1", "seed=1", *fast, "--overwrite") == 0
    capsys.readouterr()
    assert run("depth_stage2_debug.yaml", f"output_dir={s2}", f"stage1={s1 / 'model'}", "max_steps=2", *fast,
               resume=True) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"trained_on.stage1: '{first}' -> " in err
    assert json.loads((s2 / "model" / "config.json").read_text())["stage1_hash"] == first  # nothing rewritten
