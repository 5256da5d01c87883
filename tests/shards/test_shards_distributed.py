"""A 2-process `accelerate launch` run writes the same shards and manifest as a 1-process run."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import args_for, read_bytes
from fsqtok.shards import ShardDataset, verify

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate launcher not installed")
def test_two_processes_equal_one(shard_env, done, tmp_path):
    two = tmp_path / "two"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    # a plain `--cpu --num_processes 2` silently runs one process; --multi_gpu + ACCELERATE_USE_CPU runs two
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(REPO / "scripts" / "tokenize_dataset.py"), *args_for(shard_env, two)[:-1]]  # without --quiet
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert r.returncode == 0, r.stderr[:3000]
    assert "over 2 process(es)" in r.stdout and r.stdout.count("tokenized") == 1  # rank 0 reports, once
    assert ShardDataset(two).keys == ShardDataset(done).keys
    assert read_bytes(two) == read_bytes(done)  # shards, sidecars, run.json and manifest: byte-identical
    assert verify(two) == []
