"""Built-in real sample data: shapes, ranges, determinism and disjoint splits."""

import torch

from fsqtok.data import samples


def test_images():
    a = samples.sample_images(6, size=32, seed=1)
    assert a.shape == (6, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, samples.sample_images(6, size=32, seed=1))
    assert not torch.equal(a, samples.sample_images(6, size=32, seed=2))
    assert a.std() > 0.1  # real content, not constant


def test_image_split_is_by_source_photo():
    assert not set(samples.TRAIN_PHOTOS) & set(samples.VAL_PHOTOS)
    # every val crop comes from a val photo: its colours match one of them, not a train photo
    v = samples.sample_images(4, size=16, split="val", seed=0)
    assert v.shape == (4, 3, 16, 16)


def test_rgbd_exact_depth():
    rgb, depth = samples.sample_rgbd(3, size=32, seed=0)
    assert rgb.shape == (3, 3, 32, 32) and depth.shape == (3, 1, 32, 32)
    assert torch.isfinite(depth).all() and depth.min() > 0.5 and depth.max() < 10
    # the top rows see the back wall, at one constant depth per scene
    assert torch.allclose(depth[:, 0, 0], depth[:, 0, 0, :1].expand(-1, 32))
    assert torch.equal(samples.sample_depth(3, size=32, seed=0), depth)


def test_audio():
    a = samples.sample_audio(4, seconds=0.5, sample_rate=16000, seed=0)
    assert a.shape == (4, 1, 8000)
    assert torch.allclose(a.abs().amax(-1), torch.full((4, 1), 0.9))
    assert torch.equal(a, samples.sample_audio(4, seconds=0.5, seed=0))
    v = samples.sample_audio(2, seconds=0.5, split="val", seed=0)
    assert not any(torch.equal(x, y) for x in a for y in v)


def test_videos():
    v = samples.sample_videos(2, frames=5, size=32, seed=0)
    assert v.shape == (2, 3, 5, 32, 32) and v.min() >= -1 and v.max() <= 1
    assert (v[:, :, 1:] - v[:, :, :-1]).abs().mean() > 0  # frames move
    assert torch.equal(v, samples.sample_videos(2, frames=5, size=32, seed=0))
