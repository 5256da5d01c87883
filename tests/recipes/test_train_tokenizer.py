"""The training recipe end to end on the tiny debug configs (in-process, a few seconds each)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fsqtok


def train_lines(out: Path) -> dict[int, dict]:
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    return {d["step"]: d for d in lines if d["kind"] == "train"}


@pytest.mark.parametrize("modality", ["image", "depth", "audio", "video"])
def test_two_steps_write_loadable_checkpoint_and_hub_folder(run_recipe, tmp_path, modality):
    out = tmp_path / modality
    assert run_recipe(f"{modality}/{modality}_debug.yaml", f"output_dir={out}", "max_steps=2") == 0
    ckpt = out / "checkpoints" / "step-000002"
    assert (ckpt / "DONE").exists() and (ckpt / "model.safetensors").exists()
    for folder in (ckpt / "tokenizer", out / "tokenizer"):
        tok = fsqtok.load_tokenizer(str(folder))
        assert tok.modality == modality
    assert set(train_lines(out)) == {1, 2}
    evals = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in s]
    assert evals and "usage" in evals[-1] and "bits_per_token" in evals[-1]


def test_resume_is_exact(run_recipe, tmp_path):
    common = ["max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=0"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_recipe("image/image_debug.yaml", f"output_dir={a}", *common) == 0
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000002", b / "checkpoints" / "step-000002")
    assert run_recipe("image/image_debug.yaml", f"output_dir={b}", *common, resume="latest") == 0
    la, lb = train_lines(a), train_lines(b)
    assert set(lb) == {3, 4}
    for step in (3, 4):  # same data order, same loss curve
        for key in ("loss", "usage", "perplexity", "lr"):
            assert la[step][key] == lb[step][key], (step, key)
    wa, wb = load_file(a / "tokenizer" / "model.safetensors"), load_file(b / "tokenizer" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == ["step-000002", "step-000004"]


def test_keep_last_prunes_old_checkpoints(run_recipe, tmp_path):
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "max_steps=3",
                      "checkpoint.every=1", "checkpoint.keep_last=2") == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002", "step-000003"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(run_recipe, recipe, tmp_path, monkeypatch, capsys):
    real = recipe.TokenizerLoss.generator_loss

    def poisoned(self, x, out, step, *args):
        loss, terms = real(self, x, out, step, *args)
        return (loss * float("nan"), terms) if step >= 1 else (loss, terms)

    monkeypatch.setattr(recipe.TokenizerLoss, "generator_loss", poisoned)
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "max_steps=3") == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 2" in err and "step-000001" in err
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000001"]
    assert not (tmp_path / "tokenizer").exists()


def test_ctrl_c_saves_a_checkpoint_then_resume_finishes(run_recipe, recipe, tmp_path, monkeypatch):
    real = recipe.TokenizerLoss.generator_loss

    def interrupt(self, x, out, step, *args):
        if step == 1:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during step 2
        return real(self, x, out, step, *args)

    monkeypatch.setattr(recipe.TokenizerLoss, "generator_loss", interrupt)
    overrides = [f"output_dir={tmp_path}", "max_steps=3", "checkpoint.every=100"]
    assert run_recipe("image/image_debug.yaml", *overrides) == 130
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000002"]
    monkeypatch.setattr(recipe.TokenizerLoss, "generator_loss", real)
    assert run_recipe("image/image_debug.yaml", *overrides, resume="latest") == 0
    assert (tmp_path / "checkpoints" / "step-000003").exists() and (tmp_path / "tokenizer").exists()


def test_undecodable_files_are_skipped_up_to_the_limit(run_recipe, tmp_path, capsys):
    media = pytest.importorskip("fsqtok.media")
    if not hasattr(media, "read_image"):
        pytest.skip("fsqtok.media.read_image not available")
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(7):
        arr = (torch.rand(20, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(data / f"img{i}.png")
    (data / "broken.png").write_bytes(b"not a png at all")
    folder = ["data.source=folder", f"data.path={data}", "max_steps=2", "log.every=1"]
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path / 'ok'}", *folder) == 0
    log = (tmp_path / "ok" / "train.log").read_text()
    skipped = [json.loads(s)["skipped_files"] for s in (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()
               if '"train"' in s]
    assert skipped[-1] == 1, log
    capsys.readouterr()
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path / 'strict'}", *folder,
                      "data.max_decode_failures=0") == 1
    assert "failed to decode" in capsys.readouterr().err


def test_push_to_hub_pushes_the_final_tokenizer(run_recipe, tmp_path, monkeypatch):
    from fsqtok.tokenizers import Tokenizer

    pushed = []
    monkeypatch.setattr(Tokenizer, "push_to_hub", lambda self, repo_id, **kw: pushed.append((type(self).__name__, repo_id)) or "url")
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "max_steps=1",
                      "push_to_hub=true", "hub_model_id=me/fsqtok-image-test") == 0
    assert pushed == [("ImageTokenizer", "me/fsqtok-image-test")]


def test_push_to_hub_without_repo_id_fails_before_training(run_recipe, tmp_path, capsys):
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "push_to_hub=true") == 1
    assert "hub_model_id" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()
