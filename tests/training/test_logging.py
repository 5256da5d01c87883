"""TrainLogger: per-term averages, the interval line, metrics.jsonl, train.log, and resumed runs."""

from __future__ import annotations

import json

import pytest
import torch

from fsqtok.training import TrainLogger, fmt


def rows(out):
    return [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]


def test_flush_averages_each_term_over_its_own_count(make_accelerator, tmp_path, capsys):
    acc = make_accelerator(tmp_path)
    log = TrainLogger(acc, tmp_path, total_steps=10, every=2, global_batch=8, tensorboard=False, progress_bar=False)
    log.add(loss=torch.tensor(1.0), mse=0.5)
    log.add(loss=3.0)  # a micro-batch without `mse`
    log.step(1)
    log.step(2)
    assert not log.due(1) and log.due(2) and log.due(3, final=True)
    values = log.flush(2, lr=0.01)
    assert values["loss"] == 2.0 and values["mse"] == 0.5 and values["lr"] == 0.01
    assert values["samples_per_s"] == pytest.approx(8 * values["steps_per_s"])
    assert rows(tmp_path) == [{"kind": "train", "step": 2, **values}]
    line = capsys.readouterr().out.strip()
    assert line.startswith("step 2/10 loss=2 mse=0.5 lr=0.01 ") and line.endswith("[1 process(es) on cpu]")
    assert (tmp_path / "train.log").read_text().strip() == line
    log.add(loss=5.0)
    log.step(3)
    assert log.flush(3)["loss"] == 5.0  # the sums start again after a flush
    log.scalars({"psnr": 20.0}, 3, kind="eval")
    log.close()
    assert [(r["kind"], r["step"]) for r in rows(tmp_path)] == [("train", 2), ("train", 3), ("eval", 3)]


def test_for_recipe_reads_the_shared_recipe_keys(make_accelerator, tmp_path):
    from fsqtok.training import load_config

    defaults = {"output_dir": "x", "max_steps": 1, "data": {"batch_size": 1}, "optim": {"gradient_accumulation_steps": 1},
                "log": {"every": 1, "tensorboard": True, "progress_bar": True}}
    cfg = load_config(None, [f"output_dir={tmp_path}", "max_steps=7", "data.batch_size=4",
                             "optim.gradient_accumulation_steps=3", "log.every=5", "log.tensorboard=false",
                             "log.progress_bar=false"], defaults)
    log = TrainLogger.for_recipe(make_accelerator(tmp_path), cfg, start_step=2)
    assert (log.global_batch, log.total, log.every, log.out, log.tb, log.bar) == (12, 7, 5, tmp_path, None, None)
    log.close()


def test_a_resumed_run_drops_lines_after_its_start_step(make_accelerator, tmp_path):
    old = [{"kind": "train", "step": s, "loss": float(s)} for s in (1, 2, 3, 4)] + [{"kind": "eval", "step": 4}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    acc = make_accelerator(tmp_path)
    log = TrainLogger(acc, tmp_path, total_steps=4, start_step=2, tensorboard=False, progress_bar=False)
    log.add(loss=9.0)
    log.step(3)
    log.flush(3)
    log.close()
    assert [(r["step"], r["loss"]) for r in rows(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 9.0)]


def test_tensorboard_scalars_and_images(make_accelerator, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = make_accelerator(tmp_path, tensorboard=True)
    log = TrainLogger(acc, tmp_path, total_steps=2, tensorboard=True, progress_bar=False, hparams={"a": {"b": 1}})
    assert log.tb is not None
    log.add(loss=1.0)
    log.add(loss=3.0)
    log.step(1)
    log.flush(1, lr=0.5)
    log.scalars({"psnr": 21.5}, 2, kind="eval")
    log.images("recon", torch.rand(3, 8, 6), 1)
    log.audio("clip", torch.zeros(160), 1, sample_rate=16000)
    log.close()
    acc.end_training()
    events = sorted((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert events
    tags: dict[str, list] = {"scalars": [], "images": [], "audio": []}
    for folder in {e.parent for e in events}:
        ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "audio": 0}).Reload()
        for kind in tags:
            tags[kind] += [(t, ea.Scalars(t) if kind == "scalars" else ea.Images(t) if kind == "images" else ea.Audio(t))
                           for t in ea.Tags()[kind]]
    scalars = {t: [(e.step, e.value) for e in v] for t, v in tags["scalars"]}
    assert scalars["train/loss"] == [(1, 2.0)] and scalars["train/lr"] == [(1, 0.5)]  # the mean of the two terms
    assert scalars["eval/psnr"] == [(2, 21.5)] and "train/steps_per_s" in scalars
    (tag, [image]), = tags["images"]
    assert tag == "recon" and image.step == 1 and (image.height, image.width) == (8, 6)
    (tag, [clip]), = tags["audio"]
    assert tag == "clip" and clip.step == 1 and clip.sample_rate == 16000


def test_fmt():
    assert fmt({"loss": 0.123456, "lr": 1e-4}) == "loss=0.1235 lr=0.0001"


def test_evaluation_reaches_the_console_train_log_and_metrics(make_accelerator, tmp_path, capsys):
    log = TrainLogger(make_accelerator(tmp_path), tmp_path, total_steps=4, tensorboard=False, progress_bar=False)
    log.evaluation({"loss": 1.23456}, 2, "data.val")
    log.close()
    line = "eval step 2 (data.val) loss=1.235"
    assert line in capsys.readouterr().out and line in (tmp_path / "train.log").read_text()
    assert rows(tmp_path) == [{"kind": "eval", "step": 2, "loss": 1.23456}]
