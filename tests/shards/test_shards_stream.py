"""`--streaming` datasets: the same shard bytes as a random-access run, and a resume (with
DataLoader workers sharing the stream) that rewrites only what is missing."""

import datasets
import pytest
import torch
from PIL import Image

from fsqtok.datasets.samples import sample_images
from fsqtok.shards import ShardDataset, read_manifest, verify
from fsqtok.data.hf import row_key
from fsqtok.shards.cli import main

N = 11


@pytest.fixture(scope="module")
def pq_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    x = sample_images(N, 16, seed=1)
    pil = [Image.fromarray(((im.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()) for im in x]
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["a", "b", "c"])})
    ds = datasets.Dataset.from_dict({"img": pil, "y": [i % 3 for i in range(N)]}, features=feats)
    (root / "pq").mkdir()
    ds.select(range(6)).to_parquet(str(root / "pq" / "train-0.parquet"))  # the stream spans two files
    ds.select(range(6, N)).to_parquet(str(root / "pq" / "train-1.parquet"))
    return root


def _run(env, root, out, *extra):
    return main(["-t", env["tok"], "--data", str(root / "pq"), "-o", str(out), "--label-column", "y",
                 "--shard-size", "4", "--batch-size", "3", "--cache-dir", str(root / "cache"), "--quiet", *extra])


def _data_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "data").iterdir())}


def test_stream_equals_random_access_and_resumes(shard_env, pq_dir, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _run(shard_env, pq_dir, ref, "--num-workers", "0") == 0
    assert _run(shard_env, pq_dir, out, "--streaming", "--num-workers", "0") == 0
    assert _data_bytes(out) == _data_bytes(ref)  # the same rows cut into the same shards, byte for byte
    ds = ShardDataset(out)
    assert ds.keys == [row_key(i) for i in range(N)] and ds[4]["label"] == "b"
    m = read_manifest(out)
    assert m["source"]["type"] == "stream" and m["totals"]["samples"] == N and verify(out) == []
    # an interrupted run: shard 1 lost its sidecar, shard 2 only a temporary file
    (out / "meta" / "shard-00001.json").unlink()
    (out / "data" / "train-00002.parquet").rename(out / "data" / ".train-00002.parquet.tmp")
    (out / "meta" / "shard-00002.json").unlink()
    (out / "manifest.json").unlink()
    assert _run(shard_env, pq_dir, out, "--streaming", "--num-workers", "2") == 0  # workers split the batches
    assert _data_bytes(out) == _data_bytes(ref) and verify(out) == []
    assert read_manifest(out)["totals"]["rows"] == N
    # a different selection of the same stream is refused
    assert _run(shard_env, pq_dir, out, "--streaming", "--num-workers", "0", "--size", "8") == 1
