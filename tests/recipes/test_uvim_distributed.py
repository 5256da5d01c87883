"""UViM stage I and II in two CPU processes (gloo) through `accelerate launch`, with exact resume.

Slow on a shared CPU, so it runs under `make test-distributed` (FSQTOK_TEST_DISTRIBUTED=1), not in `make test`.
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
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "recipes/train_uvim.py", *args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


@pytest.mark.timeout(1800)  # four launches; minutes on a shared CPU
def test_two_process_stage1_resume_and_stage2(tmp_path):
    config = ["--config", "recipes/configs/uvim/depth_stage1_debug.yaml", "log.tensorboard=false", "max_steps=4",
              "checkpoint.every=2", "checkpoint.keep_last=0", "model.quantizer=vq_split"]
    a, b = tmp_path / "a", tmp_path / "b"
    res = launch(*config, f"output_dir={a}")
    assert "2 process(es)" in res.stdout
    ckpt = a / "checkpoints" / "step-000004"
    assert (ckpt / "random_states_0.pkl").exists() and (ckpt / "random_states_1.pkl").exists()
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "step-000002", b / "checkpoints" / "step-000002")
    launch(*config, f"output_dir={b}", "--resume")
    assert {s: v for s, v in losses(a).items() if s > 2} == losses(b)
    assert (a / "model" / "model.safetensors").read_bytes() == (b / "model" / "model.safetensors").read_bytes()

    s2 = tmp_path / "s2"
    launch("--config", "recipes/configs/uvim/depth_stage2_debug.yaml", "log.tensorboard=false",
           f"output_dir={s2}", f"stage1={a / 'model'}")
    evals = [json.loads(s) for s in (s2 / "metrics.jsonl").read_text().splitlines() if '"eval"' in s]
    assert "token_accuracy" in evals[-1] and (s2 / "model" / "stage1" / "model.safetensors").exists()
