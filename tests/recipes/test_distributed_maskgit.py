"""MaskGIT on two CPU processes (gloo) through `accelerate launch`: training on self-made debug shards, exact resume.

About 1-3 min on a shared 2-core machine, so it runs under `make test-distributed` (which sets FSQTOK_TEST_DISTRIBUTED=1), not in `make test`.
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


def launch(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_two_process_maskgit_training_and_exact_resume(tmp_path):
    # 16 rows, batch 4 per process: 2 optimizer steps per epoch
    config = ["recipes/train_maskgit.py", "--config", "recipes/configs/maskgit/fashion_mnist_debug.yaml",
              "log.tensorboard=false", "max_steps=4", "checkpoint.every=1", "checkpoint.keep_last=0"]
    a, b = tmp_path / "a", tmp_path / "b"
    res = launch(*config, f"output_dir={a}")
    assert "[2 process(es) on cpu" in res.stdout and "global batch 8" in res.stdout
    ckpt = a / "checkpoints" / "step-000004"
    assert (ckpt / "random_states_0.pkl").exists() and (ckpt / "random_states_1.pkl").exists()
    assert (a / "maskgit" / "model.safetensors").exists()
    assert json.loads((a / "debug_data" / "shards" / "manifest.json").read_text())["totals"]["rows"] == 16

    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000001", b / "checkpoints" / "step-000001")
    launch(*config, f"output_dir={b}", "--resume")

    def losses(out: Path) -> dict[int, float]:
        rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}

    assert {s: v for s, v in losses(a).items() if s > 1} == losses(b)
    assert (a / "maskgit" / "model.safetensors").read_bytes() == (b / "maskgit" / "model.safetensors").read_bytes()
