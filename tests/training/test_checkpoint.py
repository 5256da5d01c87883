"""Checkpoints: save every N, keep K, DONE markers, exact resume, and one run per output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from fsqtok.training import Checkpointer, CheckpointError, RecipeConfigError, TrainState, checkpoint_dirs, prepare_output_dir

CONFIG = {"modality": "image", "output_dir": "x", "max_steps": 4, "model": {"width": 3}, "optim": {"lr": 0.1}}


def setup(make_accelerator, out: Path, width: int = 3, keep_last: int = 0, every: int = 1):
    """A tiny prepared model + optimizer + TrainState, and its Checkpointer."""
    acc = make_accelerator(out)
    torch.manual_seed(0)
    model = torch.nn.Linear(width, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model, opt = acc.prepare(model, opt)
    state = TrainState()
    acc.register_for_checkpointing(state)
    saved = []
    ckpt = Checkpointer(acc, out, every=every, keep_last=keep_last, model_dir="model",
                        save_model=lambda p: (p.mkdir(parents=True), saved.append(p)))
    return acc, model, opt, state, ckpt


def train_steps(model, opt, state, n, ckpt=None):
    g = torch.Generator().manual_seed(state.step)
    for _ in range(n):
        loss = model(torch.randn(4, model.in_features, generator=g)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        state.step += 1
        if ckpt is not None and ckpt.due(state.step):
            ckpt.save(state.step)


def names(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def test_resume_restores_weights_optimizer_and_step_exactly(make_accelerator, tmp_path):
    a = tmp_path / "a"
    acc, model, opt, state, ckpt = setup(make_accelerator, a)
    ckpt.start(CONFIG)
    train_steps(model, opt, state, 2, ckpt)
    train_steps(model, opt, state, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    start = prepare_output_dir(a, CONFIG, resume=str(a / "checkpoints" / "step-000002"))
    acc, model, opt, state, ckpt = setup(make_accelerator, a)
    ckpt.start(CONFIG, resume_from=start)
    assert state.step == 2
    train_steps(model, opt, state, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_save_writes_done_config_and_model_folder_and_prunes(make_accelerator, tmp_path):
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path, keep_last=2)
    ckpt.start(CONFIG)
    train_steps(model, opt, state, 3, ckpt)
    assert names(tmp_path) == ["step-000002", "step-000003"]
    last = tmp_path / "checkpoints" / "step-000003"
    assert (last / "DONE").read_text() == "3\n" and (last / "model").is_dir()
    assert yaml.safe_load((last / "config.yaml").read_text()) == CONFIG
    assert ckpt.last_good() == last
    assert ckpt.save_final() == tmp_path / "model" and (tmp_path / "model").is_dir()


def test_keep_last_zero_keeps_all_and_every_counts_steps(make_accelerator, tmp_path):
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path, every=2)
    ckpt.start(CONFIG)
    assert [ckpt.due(s) for s in (1, 2, 3, 4)] == [False, True, False, True] and ckpt.due(3, final=True)
    train_steps(model, opt, state, 5, ckpt)
    assert names(tmp_path) == ["step-000002", "step-000004"]


def test_end_step_saves_when_due_or_stopping_and_finish_pushes_the_final_folder(make_accelerator, tmp_path):
    """The loop tail every recipe shares: save when due, always on the last step or a stop, then end."""
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path, every=3)
    ckpt.start(CONFIG)

    class Log:
        lines: list[str] = []

        def line(self, text: str) -> None:
            self.lines.append(text)

    log = Log()
    assert ckpt.end_step(log, 1, final=False, stop=False) is False and not (tmp_path / "checkpoints").exists()
    assert ckpt.end_step(log, 2, final=False, stop=True) is True and names(tmp_path) == ["step-000002"]
    assert log.lines[-1].startswith("interrupted at step 2")
    assert ckpt.end_step(log, 3, final=False, stop=False) is False and names(tmp_path)[-1] == "step-000003"
    assert ckpt.end_step(log, 4, final=True, stop=False) is True and names(tmp_path)[-1] == "step-000004"

    class Model:
        @classmethod
        def from_pretrained(cls, path):
            return cls()

        def push_to_hub(self, repo_id, private=False):
            return f"hub/{repo_id}/{private}"

    assert ckpt.finish(log, "thing", Model) == tmp_path / "model" and log.lines[-1] == f"saved thing {tmp_path / 'model'}"
    ckpt.save_model = None  # the folder exists now; only the push is checked below
    ckpt.finish(log, "thing", Model, push_to="me/x", private=True)
    assert log.lines[-1] == "pushed to hub/me/x/True"


def test_incomplete_checkpoints_are_ignored_and_replaced(make_accelerator, tmp_path):
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path, keep_last=1)
    ckpt.start(CONFIG)
    train_steps(model, opt, state, 1, ckpt)
    broken = tmp_path / "checkpoints" / "step-000002"
    broken.mkdir()
    (broken / "junk").write_text("interrupted save")
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-000001"]
    assert prepare_output_dir(tmp_path, CONFIG, resume="latest").name == "step-000001"
    train_steps(model, opt, state, 1, ckpt)
    assert names(tmp_path) == ["step-000002"] and not (broken / "junk").exists()


def test_last_good_is_the_newest_complete_checkpoint(make_accelerator, tmp_path):
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path)
    ckpt.start(CONFIG)
    assert ckpt.last_good() is None
    train_steps(model, opt, state, 2, ckpt)
    (tmp_path / "checkpoints" / "step-000003").mkdir()  # an interrupted save
    assert ckpt.last_good().name == "step-000002"


def test_resume_with_other_shapes_is_one_clear_error(make_accelerator, tmp_path):
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path)
    ckpt.start(CONFIG)
    train_steps(model, opt, state, 1, ckpt)
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path, width=5)
    with pytest.raises(CheckpointError, match=r"does not fit this run \(.*size mismatch"):
        ckpt.start(CONFIG, resume_from=tmp_path / "checkpoints" / "step-000001")


def test_overwrite_clears_the_old_run_but_not_other_files(make_accelerator, tmp_path):
    for name in ("metrics.jsonl", "train.log", "notes.txt"):
        (tmp_path / name).write_text("old\n")
    (tmp_path / "checkpoints" / "step-000009").mkdir(parents=True)
    (tmp_path / "model").mkdir()
    with pytest.raises(RecipeConfigError, match="already holds a run"):
        prepare_output_dir(tmp_path, CONFIG)
    assert prepare_output_dir(tmp_path, CONFIG, overwrite=True) is None
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path)
    ckpt.start(CONFIG, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "notes.txt"]


def test_used_folder_with_another_config_is_refused_naming_the_keys(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "max_steps": 9, "output_dir": "elsewhere"}))
    with pytest.raises(RecipeConfigError, match=r"different config \(differs in max_steps\); pass --resume"):
        prepare_output_dir(tmp_path, CONFIG)
    with pytest.raises(RecipeConfigError, match=r"already holds a run;"):
        prepare_output_dir(tmp_path, {**CONFIG, "max_steps": 9})  # same config: still a used folder
    assert prepare_output_dir(tmp_path, CONFIG, resume="latest") is None  # nothing to resume yet
    assert prepare_output_dir(tmp_path / "new", CONFIG) is None


def test_output_dir_that_is_a_file_and_conflicting_flags(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(RecipeConfigError, match="is a file"):
        prepare_output_dir(f, CONFIG)
    with pytest.raises(RecipeConfigError, match="exclude each other"):
        prepare_output_dir(tmp_path, CONFIG, resume="latest", overwrite=True)


def _fake_checkpoint(out: Path, step: int, config=CONFIG) -> Path:
    path = out / "checkpoints" / f"step-{step:06d}"
    path.mkdir(parents=True)
    (path / "DONE").write_text(f"{step}\n")
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def test_resume_checks(tmp_path):
    run = tmp_path / "run"
    first, second = _fake_checkpoint(run, 1), _fake_checkpoint(run, 2)
    (run / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    assert prepare_output_dir(run, CONFIG, resume="latest") == second
    assert prepare_output_dir(run, {**CONFIG, "max_steps": 8}, resume="latest", fixed_keys=("model",)) == second
    with pytest.raises(CheckpointError, match=r"another model config \(model.width: 3 -> 4\)"):
        prepare_output_dir(run, {**CONFIG, "model": {"width": 4}}, resume="latest", fixed_keys=("model",))
    with pytest.raises(CheckpointError, match="holds newer checkpoints .step-000002."):
        prepare_output_dir(run, CONFIG, resume=str(first))
    with pytest.raises(CheckpointError, match="holds another run"):
        prepare_output_dir(run, CONFIG, resume=str(_fake_checkpoint(tmp_path / "other", 5)))
    assert prepare_output_dir(tmp_path / "fresh", CONFIG, resume=str(first)) == first
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        prepare_output_dir(tmp_path / "fresh", CONFIG, resume=str(tmp_path))


def test_close_writes_the_model_only_after_a_clean_run_and_always_closes_the_log(make_accelerator, tmp_path):
    """The recipes' shared end: a stopped run (exit 130) keeps only its checkpoints; a clean one writes the model."""
    from fsqtok.training import EXIT_STOPPED

    class Log:
        def __init__(self) -> None:
            self.lines, self.closed = [], False

        def line(self, text: str) -> None:
            self.lines.append(text)

        def close(self) -> None:
            self.closed = True

    for code, written in ((EXIT_STOPPED, False), (0, True)):
        out = tmp_path / str(code)
        acc, model, opt, state, ckpt = setup(make_accelerator, out)
        ckpt.start(CONFIG)
        log = Log()
        assert ckpt.close(log, code, "thing", torch.nn.Linear) == code
        assert log.closed and (out / "model").is_dir() == written
        assert log.lines == ([f"saved thing {out / 'model'}"] if written else [])


def test_top_level_fixed_keys_are_compared_on_resume(tmp_path):
    """``seed`` or ``stage1`` (top-level values, not sections) in fixed_keys: a resume that changes them is refused."""
    from fsqtok.training.checkpoint import config_diff

    old, new = {**CONFIG, "seed": 0, "stage1": "a", "seeds": 1}, {**CONFIG, "seed": 1, "stage1": "b", "seeds": 2}
    assert config_diff(old, new, ("seed", "stage1")) == ["seed", "stage1"]  # not "seeds": a prefix is not a key
    recorded = {**CONFIG, "output_dir": "y", "trained_on": {"train_data": {"content_sha256": "ab"}}}
    assert config_diff(recorded, CONFIG) == []  # what a run writes itself is not a config difference...
    assert config_diff(recorded, CONFIG, ("trained_on.train_data",)) == ["trained_on.train_data.content_sha256"]  # ...unless named
    run = tmp_path / "run"
    _fake_checkpoint(run, 1, old)
    with pytest.raises(CheckpointError, match=r"\(seed: 0 -> 1\)"):
        prepare_output_dir(run, {**old, "seed": 1}, resume="latest", fixed_keys=("seed",))


def test_a_checkpoint_that_records_no_data_content_cannot_be_resumed_on_trust(tmp_path):
    """A checkpoint saved before runs recorded their data's content: refused, saying why, not as 'other data'."""
    from fsqtok.training.checkpoint import check_resume_config

    run = tmp_path / "run"
    _fake_checkpoint(run, 1, CONFIG)
    ckpt = run / "checkpoints" / "step-000001"
    now = {**CONFIG, "trained_on": {"train_data": {"content_sha256": "ab"}}}
    with pytest.raises(CheckpointError, match=r"records no training data \(trained_on.train_data; saved by an older "
                                              r"fsqtok\).*--overwrite"):
        check_resume_config(ckpt, now, ("trained_on.train_data",), what="training data")
    _fake_checkpoint(run, 2, {**CONFIG, "trained_on": {"train_data": {"content_sha256": "cd"}}})
    with pytest.raises(CheckpointError, match=r"another training data \(trained_on.train_data.content_sha256: 'cd' -> 'ab'"):
        check_resume_config(run / "checkpoints" / "step-000002", now, ("trained_on.train_data",), what="training data")
    check_resume_config(run / "checkpoints" / "step-000002", {**now, "trained_on": {"train_data": {"content_sha256": "cd"}}},
                        ("trained_on.train_data",))


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin"])
def test_a_corrupt_checkpoint_file_is_one_line_naming_it_and_the_previous_checkpoint(make_accelerator, tmp_path, name):
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path)
    ckpt.start(CONFIG)
    train_steps(model, opt, state, 2, ckpt)
    bad = tmp_path / "checkpoints" / "step-000002" / name
    bad.write_bytes(b"\x00" * 7 + bad.read_bytes()[:50])
    acc, model, opt, state, ckpt = setup(make_accelerator, tmp_path)
    with pytest.raises(CheckpointError) as e:
        ckpt.start(CONFIG, resume_from=tmp_path / "checkpoints" / "step-000002")
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "weights_only" not in msg
    assert f"--resume {tmp_path / 'checkpoints' / 'step-000001'}" in msg  # the previous complete checkpoint
