"""fsqtok.datasets.uvim_pairs: UViM's (image, target) pairs per task, folder pairs and the disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsqtok.data.preprocess import DataError
from fsqtok.datasets.uvim_pairs import UViMPairs


@pytest.mark.parametrize("task,shape,dtype", [("depth", (1, 16, 16), torch.float32),
                                              ("colorization", (3, 16, 16), torch.float32),
                                              ("panoptic", (2, 16, 16), torch.int64)])
def test_uvim_pairs(task, shape, dtype):
    ds = UViMPairs(task, "train", 70, 16, seed=3)
    a, b = ds[65], UViMPairs(task, "train", 70, 16, seed=3)[65]
    assert a["image"].shape == (3, 16, 16) and a["target"].shape == shape and a["target"].dtype == dtype
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(ds[0]["image"], ds[1]["image"])
    with pytest.raises(IndexError):
        ds[70]


def test_folder_pairs_through_the_paired_layer(tmp_path):
    from fsqtok.datasets.uvim_pairs import UViMFolderPairs
    from fsqtok.media import write_depth, write_image

    for sub in ("image", "depth", "semantic", "instance"):
        (tmp_path / sub).mkdir()
    for k in range(3):
        write_image(tmp_path / "image" / f"{k}.png", torch.rand(3, 20, 24) * 2 - 1)
        d = torch.full((1, 20, 24), 1.5 + k)
        d[0, 0, 0] = float("nan")
        write_depth(tmp_path / "depth" / f"{k}.png", d)
        np.save(tmp_path / "semantic" / f"{k}.npy", np.full((20, 24), k, np.int64))
        np.save(tmp_path / "instance" / f"{k}.npy", np.full((20, 24), 1, np.int64))
    depth = UViMFolderPairs("depth", str(tmp_path), 16, train=False)
    item = depth[2]
    assert len(depth) == 3 and item["image"].shape == (3, 16, 16) and item["target"].shape == (1, 16, 16)
    assert torch.allclose(item["target"][torch.isfinite(item["target"])], torch.tensor(3.5))
    pan = UViMFolderPairs("panoptic", str(tmp_path), 16, train=True, seed=1)[1]
    assert pan["target"].shape == (2, 16, 16) and pan["target"].dtype == torch.int64
    assert (pan["target"][0] == 1).all() and (pan["target"][1] == 1).all()
    col = UViMFolderPairs("colorization", str(tmp_path), 16, train=False)[0]
    assert torch.equal(col["image"], col["target"])


def test_uvim_pairs_disk_cache_renders_once_then_loads(tmp_path, monkeypatch):
    fresh = [UViMPairs("depth", "train", 3, 16, seed=2)[i] for i in range(3)]
    cached = UViMPairs("depth", "train", 3, 16, seed=2, cache_dir=tmp_path)
    path = cached.cache_file(tmp_path)
    assert path.name.startswith("uvim-depth-train-n3-s16-seed2-g")
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    monkeypatch.setattr(UViMPairs, "_make", lambda self, i: pytest.fail("rendered again instead of loading"))
    loaded = UViMPairs("depth", "train", 3, 16, seed=2, cache_dir=tmp_path)
    for i in range(3):
        assert torch.equal(loaded[i]["image"], fresh[i]["image"]) and torch.equal(loaded[i]["target"], fresh[i]["target"])
        assert torch.equal(cached[i]["target"], fresh[i]["target"])
    two = UViMPairs("depth", "train", 2, 16, seed=2).cache_file(tmp_path)
    path.rename(two)  # a file holding 3 pairs under a 2-pair name
    with pytest.raises(DataError, match="holds 3 pairs of size 16, expected 2 .*delete it"):
        UViMPairs("depth", "train", 2, 16, seed=2, cache_dir=tmp_path)
    UViMPairs("depth", "val", 2, 16, seed=2).cache_file(tmp_path).write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable UViM pair cache"):
        UViMPairs("depth", "val", 2, 16, seed=2, cache_dir=tmp_path)


def test_uvim_pairs_disk_cache_never_loads_pairs_of_a_changed_generator(tmp_path, monkeypatch):
    from fsqtok.datasets import uvim_pairs

    before = UViMPairs("depth", "train", 2, 16, seed=2, cache_dir=tmp_path).cache_file(tmp_path)
    monkeypatch.setattr(uvim_pairs, "generator_fingerprint", lambda: "changed00000")
    after = UViMPairs("depth", "train", 2, 16, seed=2, cache_dir=tmp_path).cache_file(tmp_path)
    assert after != before and after.is_file() and before.is_file()  # rendered afresh under the new code
