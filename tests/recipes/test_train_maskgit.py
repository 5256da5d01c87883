"""recipes/train_maskgit.py: the debug config runs offline for 2 steps and writes what it should; resume is exact;
residual tokens and a config without data are refused in one line; every MaskGIT config loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.utils import set_seed
from safetensors.torch import load_file

from fsqtok.generative import MaskGIT
from fsqtok.shards import read_manifest
from fsqtok.shards.manifest import content_identity
from recipe_utils import load_recipe, reset_accelerate

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "configs" / "maskgit"
DEBUG = CONFIGS / "fashion_mnist_debug.yaml"


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("train_maskgit")


@pytest.fixture
def run(recipe):
    """``run(*overrides, resume=None) -> exit code`` of the debug config, in-process, with a clean accelerate state."""

    def go(*overrides: str, resume: str | None = None) -> int:
        reset_accelerate()
        try:
            return recipe.main(["--config", str(DEBUG), *overrides, *(["--resume"] if resume else [])])
        finally:
            reset_accelerate()

    return go


def metrics(out: Path, kind: str = "train") -> dict[int, dict]:
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if r["kind"] == kind}


def test_debug_recipe_two_steps_writes_model_checkpoints_and_sample_grids(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert run(f"output_dir={out}", "max_steps=2") == 0  # the debug run holds out its own val shards
    manifest = read_manifest(out / "debug_data" / "shards")
    assert manifest["totals"]["rows"] == 16 and read_manifest(out / "debug_data" / "val")["totals"]["rows"] == 4
    for folder in (out / "maskgit", out / "checkpoints" / "step-000002" / "maskgit"):
        m = MaskGIT.from_pretrained(folder)
        cfg = m.config
        assert cfg.grid == (8, 8) and cfg.codebook_size == 1000 and cfg.class_names == ("class0", "class1")
        assert cfg.tokenizer_sha256 == manifest["tokenizer"]["weights_sha256"]
        assert (cfg.width, cfg.depth, cfg.heads) == (32, 1, 2)
    assert (out / "checkpoints" / "step-000001" / "DONE").exists() and (out / "checkpoints" / "step-000002" / "DONE").exists()
    # the saved model holds the EMA weights: neither the live weights nor the initial ones
    saved = load_file(out / "maskgit" / "model.safetensors")
    live = load_file(out / "checkpoints" / "step-000002" / "model.safetensors")
    set_seed(0)
    init = MaskGIT(cfg).state_dict()
    assert not torch.equal(saved["head.weight"], live["model.head.weight"])
    assert not torch.equal(saved["head.weight"], init["head.weight"])
    assert set(metrics(out)) == {1, 2} and set(metrics(out, "eval")) == {1, 2}
    assert all(r["loss"] > 0 for r in metrics(out, "eval").values())
    text = (out / "train.log").read_text()
    assert "[1 process(es) on cpu]" in text
    assert f"eval step 2 (data.val) loss={metrics(out, 'eval')[2]['loss']:.4g}" in text  # the eval loss is shown
    assert MaskGIT.from_pretrained(out / "maskgit").trained_on == {  # the model names its data by content
        "train_data": content_identity(manifest)["content_sha256"],
        "val_data": content_identity(read_manifest(out / "debug_data" / "val"))["content_sha256"]}
    assert cfg.tokenizer == str(out / "maskgit" / "tokenizer") or Path(cfg.tokenizer).is_absolute()
    assert MaskGIT.from_pretrained(out / "maskgit").config.tokenizer_sha256 == manifest["tokenizer"]["weights_sha256"]
    assert (out / "maskgit" / "tokenizer" / "model.safetensors").is_file()  # self-contained
    events = EventAccumulator(str(out / "logs"), size_guidance={"images": 0})
    for path in (out / "logs").rglob("events.out.tfevents.*"):
        events = EventAccumulator(str(path), size_guidance={"images": 0})
        events.Reload()
        if "samples" in events.Tags()["images"]:
            break
    grids = events.Images("samples")
    assert [g.step for g in grids] == [1, 2] and grids[0].height > 16 and grids[0].width > 2 * 16


def test_resume_mid_epoch_is_exact(run, tmp_path):
    # 16 rows / batch 4 with 2 micro-batches per step = 2 steps per epoch; resume from step 1 (mid-epoch)
    # to step 5 (epoch 3), so the accumulation phase and the data order must both be restored
    common = ["max_steps=5", "checkpoint.every=1", "checkpoint.keep_last=0", "log.tensorboard=false",
              "optim.gradient_accumulation_steps=2"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(f"output_dir={a}", *common) == 0
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000001", b / "checkpoints" / "step-000001")
    assert run(f"output_dir={b}", *common, resume="latest") == 0
    la, lb = metrics(a), metrics(b)
    assert set(lb) == {2, 3, 4, 5}
    for step in lb:
        assert (la[step]["loss"], la[step]["grad_norm"], la[step]["lr"]) == (lb[step]["loss"], lb[step]["grad_norm"],
                                                                              lb[step]["lr"]), step
    wa, wb = load_file(a / "maskgit" / "model.safetensors"), load_file(b / "maskgit" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_residual_tokens_and_missing_data_are_refused_in_one_line(run, tmp_path, capsys):
    from fsqtok.datasets.samples import sample_images
    from fsqtok.media.image import write_image
    from fsqtok.shards import TokenizeJob, tokenize
    from fsqtok.tokenizers import ImageConfig, ImageTokenizer

    ImageTokenizer(ImageConfig(quantizer="rfsq", num_stages=2, levels=(5, 5), base_channels=8, channel_mult=(1, 2),
                               num_res_blocks=1, mid_attention=False)).save_pretrained(tmp_path / "tok")
    (tmp_path / "img" / "a").mkdir(parents=True)
    for i, x in enumerate(sample_images(4, size=8)):
        write_image(tmp_path / "img" / "a" / f"{i}.png", x)
    tokenize(TokenizeJob(tokenizer=str(tmp_path / "tok"), data=str(tmp_path / "img"), output=tmp_path / "shards",
                         labels="folder", num_workers=0))
    capsys.readouterr()
    assert run(f"output_dir={tmp_path / 'r'}", f"data.train={tmp_path / 'shards'}", "data.debug_images=0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "residual tokens (2 stages) are not supported" in err[0]
    assert run(f"output_dir={tmp_path / 'r2'}", "data.debug_images=0") == 1
    assert "data.train: required" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()  # refused before anything was written


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads_and_checks(recipe, path):
    head = path.read_text().splitlines()[:3]
    assert any(f"recipes/train_maskgit.py --config recipes/configs/maskgit/{path.name}" in s for s in head)
    assert {"output_dir", "max_steps", "seed"} <= set(yaml.safe_load(path.read_text()))
    recipe.check_config(recipe.load_config(str(path), [], recipe.DEFAULTS))
    if not path.name.endswith("_debug.yaml"):
        assert path.with_name(path.stem + "_debug.yaml").exists()


def tokenized(root: Path, out: Path, tok_seed: int, size: int = 16, n: int = 8, overwrite: bool = False) -> Path:
    """``n`` built-in images of ``size`` px in two class folders under ``root/img``, tokenized into ``out`` by a
    random-init tokenizer of seed ``tok_seed`` (1000 codes; the grid is ``size / 2``)."""
    from fsqtok.datasets.samples import sample_images
    from fsqtok.media.image import write_image
    from fsqtok.shards import TokenizeJob, tokenize
    from fsqtok.tokenizers import ImageConfig, ImageTokenizer

    torch.manual_seed(tok_seed)
    ImageTokenizer(ImageConfig(levels=(8, 5, 5, 5), base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                               mid_attention=False)).save_pretrained(root / f"tok{tok_seed}")
    for i, x in enumerate(sample_images(n, size=size, seed=size)):
        (root / f"img{size}" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        write_image(root / f"img{size}" / f"c{i % 2}" / f"{i}.png", x)
    tokenize(TokenizeJob(tokenizer=str(root / f"tok{tok_seed}"), data=str(root / f"img{size}"), output=out,
                         labels="folder", num_workers=0, overwrite=overwrite))
    return out


def test_resume_on_shards_re_made_by_another_tokenizer_is_refused(run, tmp_path, capsys):
    shards = tokenized(tmp_path, tmp_path / "shards", 0)
    out = tmp_path / "run"
    base = [f"output_dir={out}", f"data.train={shards}", "data.debug_images=0", "log.tensorboard=false"]
    assert run(*base, "max_steps=2") == 0
    capsys.readouterr()
    assert run(*base, "max_steps=2") == 1  # the same config again: a used folder, not "a different config"
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())["trained_on"]["train_data"]
    assert saved == {**content_identity(read_manifest(shards)), "grid": [8, 8]}
    moved = tmp_path / "moved"
    shards.rename(moved)  # the same data at another path resumes
    assert run(*base[:1], f"data.train={moved}", *base[2:], "max_steps=3", resume="latest") == 0
    tokenized(tmp_path, moved, 1, overwrite=True)  # same images, same codebook, other weights
    capsys.readouterr()
    assert run(*base[:1], f"data.train={moved}", *base[2:], "max_steps=4", resume="latest") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained with another training data (trained_on.train_data." in err[0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000003"]


def test_val_shards_of_another_grid_or_the_training_rows_are_refused_before_step_1(run, tmp_path, capsys):
    train = tokenized(tmp_path, tmp_path / "train", 0)
    small = tokenized(tmp_path, tmp_path / "small", 0, size=8)  # the same tokenizer at another image size
    other = tokenized(tmp_path, tmp_path / "other", 1)
    base = [f"data.train={train}", "data.debug_images=0", "log.tensorboard=false"]
    capsys.readouterr()
    for i, (val, why) in enumerate([(small, "grid: [8, 8] -> [4, 4]"), (other, "tokenizer_sha256: "),
                                    (train, "holds the same rows as data.train")]):
        assert run(f"output_dir={tmp_path / str(i)}", *base, f"data.val={val}") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: data.val={val}: ") and why in err[0], err
        assert not (tmp_path / str(i) / "checkpoints").exists()


def test_overwrite_remakes_the_debug_data_with_the_new_settings(run, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(f"output_dir={out}", "max_steps=1", "log.tensorboard=false") == 0
    (out / "debug_data" / "images" / "class0" / "stray.png").write_bytes(b"")
    assert run(f"output_dir={out}", "max_steps=1", "log.tensorboard=false", "--overwrite") == 0
    assert not (out / "debug_data" / "images" / "class0" / "stray.png").exists()  # cleared, not reused
    capsys.readouterr()  # a resume with other debug settings makes other data: refused by content
    assert run(f"output_dir={out}", "max_steps=2", "log.tensorboard=false", "data.debug_images=12", resume="latest") == 1
    assert "another training data (trained_on.train_data.content_sha256" in capsys.readouterr().err
    assert read_manifest(out / "debug_data" / "shards")["totals"]["rows"] == 12
    assert run(f"output_dir={out}", "max_steps=1", "log.tensorboard=false", "data.debug_images=8",
               "data.debug_classes=4", "--overwrite") == 0
    manifest = read_manifest(out / "debug_data" / "shards")
    assert manifest["totals"]["rows"] == 8
    assert MaskGIT.from_pretrained(out / "maskgit").config.class_names == ("class0", "class1", "class2", "class3")


def test_a_relative_tokenizer_path_is_recorded_absolute(run, tmp_path, monkeypatch):
    """Shards made with ``--tokenizer tok0`` (relative): the model records the folder so that it loads from anywhere."""
    monkeypatch.chdir(tmp_path)
    shards = tokenized(Path("."), Path("shards"), 0)
    assert read_manifest(shards)["tokenizer"]["source"] == "tok0"
    assert run("output_dir=run", f"data.train={shards}", "data.debug_images=0", "log.tensorboard=false",
               "max_steps=1") == 0
    assert MaskGIT.from_pretrained(tmp_path / "run" / "maskgit").config.tokenizer == str((tmp_path / "tok0").resolve())
