"""A 2-process `accelerate launch` run writes the same shards and manifest as a 1-process run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import args_for, read_bytes
from fsqtok.shards import ShardDataset, verify
from fsqtok.shards.tokenize import main

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_processes_equal_one(shard_env, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args_for(shard_env, one)) == 0
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    env.pop("FSQTOK_SHARDS_CRASH_AFTER", None)
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           str(REPO / "scripts" / "tokenize_dataset.py"), *args_for(shard_env, two)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ShardDataset(two).keys == ShardDataset(one).keys
    a, b = read_bytes(one), read_bytes(two)
    assert a == b  # shards, sidecars, run.json and manifest: byte-identical
    assert verify(two) == []
