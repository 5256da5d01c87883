"""Token shards as a source: random access and deterministic, exactly-once streaming across ranks."""

import numpy as np
import pytest
import torch

from fsqtok.data import ShardDataset, ShardStream
from fsqtok.shards.manifest import build_manifest, run_record, write_manifest
from fsqtok.shards.writer import write_shard

NUM_IMAGES = 14


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """14 rows of 4x4 tokens (codebook 1000, uint16) in shards of 4, 4, 4 and 2 rows, as tokenize writes them."""
    out = tmp_path_factory.mktemp("token_shards")
    rng = np.random.default_rng(0)
    rows = [{"key": f"{'cat' if i % 2 else 'dog'}/{i:03d}.png", "tokens": rng.integers(0, 1000, (4, 4)).astype(np.uint16),
             "label": "cat" if i % 2 else "dog"} for i in range(NUM_IMAGES)]
    rows.sort(key=lambda r: r["key"])
    for i in range(4):
        write_shard(out, i, rows[4 * i:4 * i + 4], [], np.dtype(np.uint16), "image")
    record = run_record({"codebook_size": 1000}, {"type": "test"}, {})
    write_manifest(out, build_manifest(out, record, 4, NUM_IMAGES, "uint16"))
    return out


def test_random_access(out):
    ds = ShardDataset(out)
    assert len(ds) == NUM_IMAGES and ds.keys == sorted(ds.keys)
    row = ds[-1]
    assert row["key"] == ds.keys[-1] and row["tokens"].shape == (4, 4) and row["tokens"].dtype == torch.int64
    assert int(row["tokens"].max()) < ds.codebook_size
    grid = ds.array()  # one (N, h, w) array in the stored dtype
    assert grid.shape == (NUM_IMAGES, 4, 4) and grid.dtype == np.uint16
    assert all(np.array_equal(grid[i], ds[i]["tokens"].numpy()) for i in range(len(ds)))
    with pytest.raises(IndexError):
        ds[NUM_IMAGES]
    loader = torch.utils.data.DataLoader(ds, batch_size=5, shuffle=True, collate_fn=lambda b: b)
    assert sorted(r["key"] for b in loader for r in b) == ds.keys


def _epoch(out, seed, epoch, world, **kw):
    per_rank = []
    for rank in range(world):
        s = ShardStream(out, seed=seed, rank=rank, world_size=world, buffer_size=3, **kw)
        s.set_epoch(epoch)
        per_rank.append([r["key"] for r in s])
        assert len(per_rank[-1]) == len(s)
    return per_rank


def test_stream_exactly_once_and_deterministic(out):
    keys = ShardDataset(out).keys
    a = _epoch(out, seed=0, epoch=0, world=2)
    assert sorted(a[0] + a[1]) == keys and abs(len(a[0]) - len(a[1])) <= 1
    assert _epoch(out, seed=0, epoch=0, world=2) == a  # deterministic per (seed, epoch, rank)
    assert _epoch(out, seed=0, epoch=1, world=2) != a  # reshuffled next epoch
    assert _epoch(out, seed=1, epoch=0, world=2) != a
    (single,) = _epoch(out, seed=0, epoch=0, world=1)
    assert sorted(single) == keys and single != keys
    (plain,) = _epoch(out, seed=0, epoch=0, world=1, shuffle=False)
    assert plain == keys


def test_stream_tokens_match_dataset(out):
    ds = ShardDataset(out)
    by_key = {ds.keys[i]: ds[i] for i in range(len(ds))}
    for row in ShardStream(out, seed=3, rank=0, world_size=1):
        assert torch.equal(row["tokens"], by_key[row["key"]]["tokens"]) and row["label"] == by_key[row["key"]]["label"]


def test_stream_with_dataloader_workers(out):
    got = []
    for rank in range(2):  # 2 ranks x 2 workers: every row once
        s = ShardStream(out, seed=0, rank=rank, world_size=2)
        got += [r["key"] for r in torch.utils.data.DataLoader(s, batch_size=None, num_workers=2)]
    assert sorted(got) == ShardDataset(out).keys
