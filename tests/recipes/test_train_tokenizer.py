"""The training recipe end to end on the tiny debug configs (in-process, a few seconds each).

Besides the smoke runs, these pin what the loop must do: the adversarial term reaches the
generator's gradient and the discriminator is trained on its own loss alone; gradient accumulation
takes one optimizer step (and one schedule step) per N micro-batches; the EMA follows the weights;
resume is exact mid-epoch; a used output_dir is never mixed with another run.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fsqtok
from fsqtok.losses import TokenizerLoss
from fsqtok.training import lr_multiplier

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"


def train_lines(out: Path) -> dict[int, dict]:
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    return {d["step"]: d for d in lines if d["kind"] == "train"}


def checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


@pytest.mark.parametrize("modality", ["image", "depth", "audio", "video"])
def test_two_steps_write_loadable_checkpoint_and_hub_folder(run_recipe, tmp_path, modality):
    out = tmp_path / modality
    assert run_recipe(f"{modality}/{modality}_debug.yaml", f"output_dir={out}", "max_steps=2", "log.tensorboard=true") == 0
    ckpt = out / "checkpoints" / "step-000002"
    assert (ckpt / "DONE").exists() and (ckpt / "model.safetensors").exists() and (ckpt / "config.yaml").exists()
    for folder in (ckpt / "tokenizer", out / "tokenizer"):
        tok = fsqtok.load_tokenizer(str(folder))
        assert tok.modality == modality
    assert set(train_lines(out)) == {1, 2}
    evals = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in s]
    assert evals and "usage" in evals[-1] and "bits_per_token" in evals[-1]
    log = (out / "train.log").read_text().splitlines()
    assert [s for s in log if s.startswith("step 2/2 ")][0].endswith("[1 process(es) on cpu]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(out / "logs" / "train"), size_guidance={"images": 0, "audio": 0}).Reload().Tags()
    assert "train/loss" in tags["scalars"] and "eval/usage" in tags["scalars"]
    assert ("original/0" in tags["audio"]) if modality == "audio" else ("reconstructions" in tags["images"])


def test_greyscale_tokenizer_trains_on_grey_media(run_recipe, tmp_path):
    """tokenizer.in_channels=1 (issue 10 item 4): the recipe reads one-channel media (it crashed before)."""
    out = tmp_path / "grey"
    assert run_recipe("image/image_debug.yaml", f"output_dir={out}", "max_steps=1", "tokenizer.in_channels=1") == 0
    assert fsqtok.load_tokenizer(str(out / "tokenizer")).config.in_channels == 1


def test_resume_mid_epoch_with_accumulation_is_exact(run_recipe, tmp_path):
    # 16 items / batch 4 = 4 micro-batches per epoch = 2 optimizer steps: step 1 ends mid-epoch
    common = ["max_steps=3", "checkpoint.every=1", "checkpoint.keep_last=0", "data.num_train=16",
              "optim.gradient_accumulation_steps=2"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_recipe("image/image_debug.yaml", f"output_dir={a}", *common) == 0
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000001", b / "checkpoints" / "step-000001")
    assert run_recipe("image/image_debug.yaml", f"output_dir={b}", *common, resume="latest") == 0
    la, lb = train_lines(a), train_lines(b)
    assert set(lb) == {2, 3}
    for step in (2, 3):  # same data order, same loss curve
        for key in ("loss", "usage", "perplexity", "lr", "grad_norm"):
            assert la[step][key] == lb[step][key], (step, key)
    wa, wb = load_file(a / "tokenizer" / "model.safetensors"), load_file(b / "tokenizer" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_accumulation_steps_schedule_and_ema(run_recipe, recipe, tmp_path, monkeypatch):
    """2 micro-batches per optimizer step: 3 steps = 6 forward passes, 3 AdamW steps at the scheduled
    rates; the EMA of the saved tokenizer is the running average of the weights after each step."""
    forwards, rates = [], []
    real_loss, real_step = TokenizerLoss.generator_loss, torch.optim.AdamW.step

    def count_loss(self, x, out, step, *args):
        forwards.append(step)
        return real_loss(self, x, out, step, *args)

    def count_step(self, *args, **kw):
        rates.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kw)

    monkeypatch.setattr(TokenizerLoss, "generator_loss", count_loss)
    monkeypatch.setattr(torch.optim.AdamW, "step", count_step)
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", "max_steps=3", "optim.gradient_accumulation_steps=2", "optim.warmup_steps=2",
                 "optim.schedule=cosine", "optim.min_lr_ratio=0.1", "optim.ema_decay=0.5", "checkpoint.every=1",
                 "checkpoint.keep_last=0"]
    assert run_recipe("image/image_debug.yaml", *overrides) == 0
    mult = [lr_multiplier(s, warmup_steps=2, max_steps=3, min_lr_ratio=0.1) for s in range(4)]
    assert forwards == [0, 0, 1, 1, 2, 2]
    assert rates == pytest.approx([1e-3 * m for m in mult[:3]])
    assert [train_lines(out)[s]["lr"] for s in (1, 2, 3)] == pytest.approx([1e-3 * m for m in mult[1:]])

    # EMA: shadow_n = shadow_{n-1} + (1 - d_n) (w_n - shadow_{n-1}), d_n = min(0.5, (1 + n) / (10 + n))
    from accelerate.utils import set_seed

    set_seed(0)
    initial = recipe.build_tokenizer(recipe.load_recipe_config(str(CONFIGS / "image/image_debug.yaml"), []))
    shadow = {k: v.clone() for k, v in initial.state_dict().items()}
    for n in range(3):
        w = load_file(out / "checkpoints" / f"step-{n + 1:06d}" / "model.safetensors")
        d = min(0.5, (1 + n) / (10 + n))
        for k, v in w.items():
            if v.is_floating_point():
                shadow[k] = shadow[k] + (1 - d) * (v - shadow[k])
    saved = load_file(out / "tokenizer" / "model.safetensors")
    for k, v in saved.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, shadow[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(saved[k], w[k]) for k in saved)  # not the raw weights


def test_adversarial_term_reaches_the_generator_and_the_discriminator_learns(run_recipe, recipe, tmp_path, monkeypatch):
    """With the adversarial term on from step 0, the tokenizer's gradient differs from a run where it
    starts later; the discriminator's weights change, from its own loss only."""
    discs, entry_grads = [], []
    real_build, real_d_loss = recipe.build_discriminator, TokenizerLoss.discriminator_loss

    def spy_build(*args):
        disc = real_build(*args)
        discs.append({k: v.detach().clone() for k, v in disc.named_parameters()})  # not BatchNorm statistics
        return disc

    def spy_d_loss(self, x, out, disc):
        entry_grads.append([p.grad for p in disc.parameters()])
        return real_d_loss(self, x, out, disc)

    monkeypatch.setattr(recipe, "build_discriminator", spy_build)
    monkeypatch.setattr(TokenizerLoss, "discriminator_loss", spy_d_loss)
    adv = ["max_steps=1", "loss.adversarial_weight=1.0", "loss.disc_channels=8", "loss.disc_layers=2"]
    on, off = tmp_path / "on", tmp_path / "off"
    assert run_recipe("image/image_debug.yaml", f"output_dir={on}", *adv) == 0
    assert run_recipe("image/image_debug.yaml", f"output_dir={off}", *adv, "loss.adversarial_start=5") == 0
    lon, loff = train_lines(on)[1], train_lines(off)[1]
    assert "generator" in lon and "discriminator" in lon and "generator" not in loff
    assert lon["reconstruction"] == loff["reconstruction"]  # same weights, same batch
    assert lon["grad_norm"] != loff["grad_norm"]  # the adversarial term reached the tokenizer's gradient
    assert len(entry_grads) == 1 and all(g is None for g in entry_grads[0])  # no generator gradient in the disc
    trained = load_file(on / "checkpoints" / "step-000001" / "model_1.safetensors")
    assert all(not torch.equal(trained[k], v) for k, v in discs[0].items())  # every weight took a step


def test_keep_last_prunes_old_checkpoints(run_recipe, tmp_path):
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "max_steps=3",
                      "checkpoint.every=1", "checkpoint.keep_last=2") == 0
    assert checkpoints(tmp_path) == ["step-000002", "step-000003"]


def test_used_output_dir_is_refused_unless_overwrite_or_resume(run_recipe, tmp_path, capsys):
    run = ["image/image_debug.yaml", f"output_dir={tmp_path}", "checkpoint.keep_last=1"]
    assert run_recipe(*run, "max_steps=2") == 0
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert run_recipe(*run, "max_steps=1", "tokenizer.levels=[5,5,5]") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs in max_steps, tokenizer.levels" in err
    assert checkpoints(tmp_path) == ["step-000002"] and (tmp_path / "metrics.jsonl").read_bytes() == metrics
    assert run_recipe(*run, "--resume", "max_steps=3") == 0  # `--resume max_steps=3`: an override
    assert set(train_lines(tmp_path)) == {1, 2, 3} and checkpoints(tmp_path) == ["step-000003"]
    assert run_recipe(*run, "max_steps=1", "tokenizer.levels=[5,5,5]", "--overwrite") == 0
    assert set(train_lines(tmp_path)) == {1} and checkpoints(tmp_path) == ["step-000001"]
    assert fsqtok.load_tokenizer(str(tmp_path / "tokenizer")).codebook_size == 125


def test_whole_config_is_checked_before_anything_runs(run_recipe, tmp_path, capsys):
    bad = ["max_steps=-1", "log.every=0", "checkpoint.every=0", "data.batch_size=0", "tokenizer.levels=[1,5]"]
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path / 'run'}", *bad) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: max_steps=-1: must be > 0",
        "error: data.batch_size=0: must be > 0",
        "error: log.every=0: must be > 0",
        "error: checkpoint.every=0: must be > 0",
        "error: tokenizer: ImageConfig.levels: expected a list of ints >= 2, got [1, 5]",
    ]
    assert not (tmp_path / "run").exists()
    (tmp_path / "file").write_text("")
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path / 'file'}") == 1
    assert capsys.readouterr().err == f"error: output_dir={tmp_path / 'file'} is a file; choose a folder\n"
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path / 'run'}", "tokenizer.levels=[8,8,8,8,8,8,8,8,8]") == 1
    assert "134,217,728 codes are too many for the usage statistics" in capsys.readouterr().err
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path / 'run'}", "tokenizer.latent_channels=abc") == 1
    assert capsys.readouterr().err == "error: tokenizer: ImageConfig.latent_channels: expected an int, got 'abc'\n"
    assert not (tmp_path / "run").exists()


def test_resume_with_another_model_config_is_refused(run_recipe, tmp_path, capsys):
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "max_steps=1") == 0
    capsys.readouterr()
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "tokenizer.levels=[5,5,5]", resume="latest") == 1
    assert "trained with another model config (tokenizer.levels: [8, 5, 5, 5] -> [5, 5, 5])" in capsys.readouterr().err


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(run_recipe, tmp_path, monkeypatch, capsys):
    real = TokenizerLoss.generator_loss

    def poisoned(self, x, out, step, *args):
        loss, terms = real(self, x, out, step, *args)
        return (loss * float("nan"), terms) if step >= 1 else (loss, terms)

    monkeypatch.setattr(TokenizerLoss, "generator_loss", poisoned)
    assert run_recipe("image/image_debug.yaml", f"output_dir={tmp_path}", "max_steps=3") == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 2" in err and "step-000001" in err
    assert checkpoints(tmp_path) == ["step-000001"]
    assert not (tmp_path / "tokenizer").exists()


def test_ctrl_c_saves_a_checkpoint_then_resume_finishes(run_recipe, tmp_path, monkeypatch):
    real = TokenizerLoss.generator_loss

    def interrupt(self, x, out, step, *args):
        if step == 1:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during step 2
        return real(self, x, out, step, *args)

    monkeypatch.setattr(TokenizerLoss, "generator_loss", interrupt)
    overrides = [f"output_dir={tmp_path}", "max_steps=3", "checkpoint.every=100"]
    assert run_recipe("image/image_debug.yaml", *overrides) == 130
    assert checkpoints(tmp_path) == ["step-000002"]
    monkeypatch.setattr(TokenizerLoss, "generator_loss", real)
    assert run_recipe("image/image_debug.yaml", *overrides, resume="latest") == 0
    assert (tmp_path / "checkpoints" / "step-000003").exists() and (tmp_path / "tokenizer").exists()
    assert set(train_lines(tmp_path)) == {1, 2, 3}


def test_undecodable_files_are_skipped_up_to_the_limit(run_recipe, tmp_path, capsys):
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
    assert train_lines(tmp_path / "ok")[2]["skipped_files"] == 1, log
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


def test_folder_data_is_named_by_content_and_a_remade_folder_refuses_resume(run_recipe, tmp_path, capsys):
    """Issue 17 §2.6a and the provenance rule: without data.val_path the metrics are train_set, never eval;
    config.yaml and the tokenizer's config.json name the data by content; re-made data at the same path
    (other pixels) is refused on --resume in one line."""
    from PIL import Image

    from fsqtok.data import data_fingerprint

    def make(seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        data.mkdir(exist_ok=True)
        for i in range(4):
            Image.fromarray((torch.rand(20, 24, 3, generator=g) * 255).to(torch.uint8).numpy()).save(data / f"{i}.png")

    data, out = tmp_path / "data", tmp_path / "run"
    make(0)
    run = ["image/image_debug.yaml", f"output_dir={out}", "data.source=folder", f"data.path={data}", "data.batch_size=2"]
    assert run_recipe(*run, "max_steps=1") == 0
    kinds = {json.loads(s)["kind"] for s in (out / "metrics.jsonl").read_text().splitlines()}
    assert kinds == {"train", "train_set"} and "4 train / no held-out items" in (out / "train.log").read_text()
    named = {"train_data": data_fingerprint(data), "val_data": data_fingerprint(data)}
    assert json.loads((out / "tokenizer" / "config.json").read_text())["trained_on"] == named
    assert fsqtok.load_tokenizer(str(out / "tokenizer")).trained_on == named
    make(1)
    capsys.readouterr()
    assert run_recipe(*run, "max_steps=2", resume="latest") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"trained_on.train_data: '{named['train_data']}' -> " in err
