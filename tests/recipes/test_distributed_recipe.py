"""Two CPU processes (gloo) through `accelerate launch`: training, exact resume, gathered evaluation,
and config errors reported once (by rank 0) before any step.

About 25 s, so it runs under `make test-distributed` (which sets FSQTOK_TEST_DISTRIBUTED=1), not in `make test`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.environ.get("FSQTOK_TEST_DISTRIBUTED") != "1",
                                reason="set FSQTOK_TEST_DISTRIBUTED=1 (make test-distributed)")


def launch(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == expect, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_two_process_training_resume_and_evaluation(tmp_path):
    config = ["recipes/train_tokenizer.py", "--config", "recipes/configs/image/image_debug.yaml",
              "log.tensorboard=false", "max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=0"]
    a, b = tmp_path / "a", tmp_path / "b"
    res = launch(*config, f"output_dir={a}")
    assert "2 process(es)" in res.stdout
    ckpt = a / "checkpoints" / "step-000004"
    assert (ckpt / "random_states_0.pkl").exists() and (ckpt / "random_states_1.pkl").exists()
    assert (a / "tokenizer" / "model.safetensors").exists()

    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000002", b / "checkpoints" / "step-000002")
    launch(*config, f"output_dir={b}", "--resume")

    def losses(out: Path) -> dict[int, float]:
        rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}

    assert {s: v for s, v in losses(a).items() if s > 2} == losses(b)

    ev = tmp_path / "eval"
    launch("scripts/evaluate.py", "--tokenizer", str(a / "tokenizer"), "--name", "t", "--num", "5",
           "--size", "16", "--batch-size", "2", "--output-dir", str(ev))
    metrics = json.loads((ev / "eval.json").read_text())["results"]["t"]
    assert metrics["items"] == 5  # gathered from both processes, padding dropped


def test_config_errors_are_reported_once_before_any_step(tmp_path):
    res = launch("recipes/train_tokenizer.py", "--config", "recipes/configs/image/image_debug.yaml",
                 f"output_dir={tmp_path / 'run'}", "log.every=0", "data.batch_size=0", expect=1)
    ours = [s for s in res.stderr.splitlines() if s.startswith("error")]
    assert ours == ["error: data.batch_size=0: must be > 0", "error: log.every=0: must be > 0"], res.stderr
    frames = [s for s in res.stderr.splitlines() if s.strip().startswith('File "')]
    assert not [s for s in frames if "fsqtok" in s or "train_tokenizer" in s], res.stderr  # only the launcher's own
    assert not (tmp_path / "run").exists()
