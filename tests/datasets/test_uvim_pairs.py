"""UViM's offline pairs: scale-ambiguous ray-cast RGB-D, composited panoptic scenes, real depth frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsqtok.datasets import rgbd
from fsqtok.datasets.panoptic import MIN_PIXELS, NUM_CLASSES, synthetic_panoptic
from fsqtok.datasets.real_depth import motorcycle_depth, read_castel_depth, real_depth_frames
from fsqtok.data.preprocess import DataError
from fsqtok.datasets.uvim_pairs import UViMPairs


def _render_at(monkeypatch, scale: float, tile: float):
    monkeypatch.setattr(rgbd, "SCALE_RANGE", (scale, scale))
    monkeypatch.setattr(rgbd, "TILE_RANGE", (tile, tile))
    return rgbd.synthetic_rgbd(3, 32, "train", seed=5)


def test_rgbd_scale_is_invisible_but_for_the_metric_floor_tiles(monkeypatch):
    rgb1, d1 = _render_at(monkeypatch, 1.0, 0.5)
    rgb2, d2 = _render_at(monkeypatch, 2.5, 1.25)  # tiles scaled with the scene: no cue left
    assert torch.equal(rgb1, rgb2)  # the same picture ...
    assert torch.allclose(d2, 2.5 * d1)  # ... at another metric scale


def test_rgbd_floor_tiles_reveal_the_scale_and_nothing_else_does(monkeypatch):
    rgb1, d1 = _render_at(monkeypatch, 1.0, 0.5)
    rgb2, d2 = _render_at(monkeypatch, 2.5, 0.5)  # the same metric tiles in a 2.5x bigger scene
    assert torch.allclose(d2, 2.5 * d1)
    changed = (rgb1 != rgb2).any(1)  # (3, 32, 32)
    assert changed.sum() > 30  # the tile pattern differs ...
    assert not changed[:, :16].any()  # ... and only below the horizon (the camera looks level): on the floor


def test_rgbd_is_deterministic_finite_and_varied():
    rgb, d = rgbd.synthetic_rgbd(8, 32, "val", seed=1)
    rgb2, d2 = rgbd.synthetic_rgbd(2, 32, "val", seed=1, start=6)
    assert torch.equal(rgb[6:], rgb2) and torch.equal(d[6:], d2)
    assert rgb.shape == (8, 3, 32, 32) and rgb.min() >= -1 and rgb.max() <= 1
    assert torch.isfinite(d).all() and d.min() > 0.1 and d.max() < 30
    scales = d.flatten(1).median(1).values
    assert scales.max() / scales.min() > 2  # scenes at different metric scales
    assert not torch.equal(rgbd.synthetic_rgbd(1, 32, "train", seed=1)[0], rgb[:1])  # splits differ
    with pytest.raises(ValueError, match="split"):
        rgbd.synthetic_rgbd(1, 32, "dev")


def test_panoptic_labels_are_exact_and_canonical():
    rgb, y = synthetic_panoptic(6, 48, "val", seed=0)
    assert rgb.shape == (6, 3, 48, 48) and y.shape == (6, 2, 48, 48) and y.dtype == torch.int64
    sem, inst = y[:, 0], y[:, 1]
    assert torch.equal(sem == 0, inst == 0)  # background is stuff, every thing pixel has an instance
    assert int(sem.max()) < NUM_CLASSES
    for b in range(6):
        ids = [int(i) for i in inst[b].unique() if i > 0]
        assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 1
        first = [int(torch.nonzero((inst[b] == i).flatten())[0]) for i in ids]
        assert first == sorted(first)  # numbered in raster order of their first pixel
        for i in ids:
            m = inst[b] == i
            assert m.sum() >= MIN_PIXELS and sem[b][m].unique().numel() == 1  # one class per instance
    assert torch.equal(synthetic_panoptic(2, 48, "val", seed=0, start=4)[1], y[4:])


def test_motorcycle_disparity_to_depth():
    d = np.array([0.0, 10.0, np.inf])
    z = motorcycle_depth(d)
    assert z[0] == pytest.approx(994.978 * 193.001 / 31.086 / 1000)
    assert z[1] == pytest.approx(994.978 * 193.001 / 41.086 / 1000)
    assert np.isinf(z[2])


def test_castel_depth_reader(tmp_path):
    raw = np.array([2, 3], "<u4").tobytes() + np.array([0, 1, 8000, 2, 3, 4], "<u2").tobytes()
    (tmp_path / "d.bin").write_bytes(raw)
    z = read_castel_depth(tmp_path / "d.bin")
    assert z.shape == (2, 3) and np.isinf(z[0, 0]) and z[0, 2] == pytest.approx(8000 * 0.000124986647)
    (tmp_path / "bad.bin").write_bytes(raw[:-2])
    with pytest.raises(ValueError, match="header says 2x3"):
        read_castel_depth(tmp_path / "bad.bin")


@pytest.mark.parametrize("source,count,lo,hi", [("motorcycle", 1, 1.5, 6.0), ("castel", 3, 0.1, 1.0)])
def test_real_depth_frames(source, count, lo, hi):
    x, d = real_depth_frames(source, 32)
    assert x.shape == (count, 3, 32, 32) and d.shape == (count, 1, 32, 32)
    valid = torch.isfinite(d)
    assert valid.float().mean() > 0.5 and lo < d[valid].min() and d[valid].max() < hi


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


def test_panoptic_scenes_read_fashion_mnist_through_the_one_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("FSQTOK_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        synthetic_panoptic(1, 16, "train", seed=0)


def test_castel_frames_come_from_the_environment_or_a_one_line_error(tmp_path, monkeypatch):
    from fsqtok.datasets.real_depth import RealDepthError

    monkeypatch.setenv("FSQTOK_CASTEL_DIR", str(tmp_path))
    with pytest.raises(RealDepthError, match=f"{tmp_path}: no castel frames.*apt-get install visp-images-data"):
        real_depth_frames("castel", 16)
