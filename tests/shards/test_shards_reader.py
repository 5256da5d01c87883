"""The shard reader: random access and deterministic, exactly-once streaming across ranks."""

import numpy as np
import pytest
import torch

from conftest import NUM_IMAGES
from fsqtok.shards import ShardDataset, ShardStream


@pytest.fixture(scope="module")
def out(done):
    return done


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
