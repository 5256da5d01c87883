"""Built-in real sample data: shapes, ranges, determinism and disjoint splits."""

import torch

from fsqtok.datasets import rgbd, samples


def test_images():
    a = samples.sample_images(6, size=32, seed=1)
    assert a.shape == (6, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, samples.sample_images(6, size=32, seed=1))
    assert not torch.equal(a, samples.sample_images(6, size=32, seed=2))
    assert a.std() > 0.1  # real content, not constant


def test_image_split_is_by_source_photo(monkeypatch):
    assert not set(samples.TRAIN_PHOTOS) & set(samples.VAL_PHOTOS)
    # each photo replaced by one flat grey that names it: a crop's value tells which photo it came from
    names = samples.TRAIN_PHOTOS + samples.VAL_PHOTOS
    code = {n: round(-0.9 + 0.15 * i, 2) for i, n in enumerate(names)}
    monkeypatch.setattr(samples, "photo", lambda n: torch.full((3, 40, 60), code[n]))
    for split, allowed in (("val", samples.VAL_PHOTOS), ("train", samples.TRAIN_PHOTOS)):
        x = samples.sample_images(64, size=8, split=split, seed=0)
        used = {round(float(v), 2) for v in x.flatten(1).mean(1)}
        assert used == {code[n] for n in allowed}  # every photo of the split, and no other


def test_rgbd_comes_from_the_one_ray_caster():
    rgb, depth = samples.sample_rgbd(3, size=32, seed=0)
    assert rgb.shape == (3, 3, 32, 32) and depth.shape == (3, 1, 32, 32)
    assert torch.isfinite(depth).all() and depth.min() > 0 and depth.max() < 9.0 * rgbd.SCALE_RANGE[1]  # back wall
    ref_rgb, ref_depth = rgbd.synthetic_rgbd(3, 32, "train", seed=0)
    assert torch.equal(rgb, ref_rgb) and torch.equal(depth, ref_depth)
    assert not torch.equal(samples.sample_rgbd(3, size=32, split="val", seed=0)[1], depth)
    assert torch.equal(samples.sample_depth(3, size=32, seed=0), depth)


def test_speech_ships_inside_fsqtok():
    """Issue 10.14: the sample speech needs no package beyond fsqtok (pyannote.audio is not read)."""
    import importlib.resources

    assert (importlib.resources.files("fsqtok.datasets") / samples.SPEECH_FILE).is_file()
    speech = samples._speech(16000)
    assert speech.shape == (30 * 16000,) and speech.abs().max() > 0.1


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
