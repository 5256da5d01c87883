"""The training datasets: one preprocessing with `fsqtok tokenize`, channels, collate, sampler, failures."""

import numpy as np
import pytest
import torch
from PIL import Image

from fsqtok.data import (DataError, DecodeFailures, EpochSampler, ShardDataset, build_dataset, collate,
                         extensions)
from fsqtok.media import IMAGE_EXTENSIONS
from fsqtok.shards import TokenizeJob, tokenize
from fsqtok.tokenizers import ImageConfig, ImageTokenizer

DATA = {"source": "folder", "size": 16, "frames": 3, "seconds": 0.5, "path": None, "val_path": None}


def _photos(root, n=3):
    """Non-square colour photos of several sizes (so every path resizes and crops)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = 30 + 7 * i, 45 - 4 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")


@pytest.mark.parametrize("in_channels", [3, 1])
def test_training_and_tokenize_see_identical_pixels(tmp_path, in_channels):
    """Issue 9: a tokenizer is trained on the pixels it later tokenizes (also grey, issue 10.4)."""
    _photos(tmp_path / "imgs")
    tok = ImageTokenizer(ImageConfig(in_channels=in_channels)).eval()
    tok.save_pretrained(tmp_path / "tok")
    train = build_dataset("image", {**DATA, "path": str(tmp_path / "imgs")}, "train", channels=in_channels)
    x = torch.stack([train[i] for i in range(len(train))])
    assert x.shape == (3, in_channels, 16, 16)
    summary = tokenize(TokenizeJob(tokenizer=str(tmp_path / "tok"), data=str(tmp_path / "imgs"),
                                   output=tmp_path / "out", size=16, num_workers=0, device="cpu"))
    assert summary["rows"] == 3 and summary["failed"] == 0
    with torch.inference_mode():
        expected = tok.encode(x)
    got = torch.stack([r["tokens"] for r in ShardDataset(tmp_path / "out")])
    assert torch.equal(got, expected)
    # and pixel for pixel: the tokenize job's own preprocessing of each file
    from fsqtok.shards.pipeline import preprocess_for
    prep = preprocess_for(tok, TokenizeJob(tokenizer="t", data="d", output="o", size=16))
    for i, key in enumerate(ShardDataset(tmp_path / "out").keys):
        assert torch.equal(prep.load(tmp_path / "imgs" / key)[0], x[i])


def test_samples_follow_channels():
    rgb = build_dataset("image", {**DATA, "source": "samples", "num_train": 2, "num_val": 2}, "val")
    grey = build_dataset("image", {**DATA, "source": "samples", "num_train": 2, "num_val": 2}, "val", channels=1)
    assert rgb[0].shape == (3, 16, 16) and grey[0].shape == (1, 16, 16)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    assert torch.allclose(grey[0], (rgb[0] * luma).sum(0, keepdim=True), atol=1e-6)


def test_folder_extensions_come_from_media(tmp_path):
    assert extensions("image") == tuple(sorted(IMAGE_EXTENSIONS)) and ".tif" not in extensions("image")
    (tmp_path / "a.tif").write_bytes(b"II*\x00")
    with pytest.raises(DataError, match="no image files"):
        build_dataset("image", {**DATA, "path": str(tmp_path)}, "train")


def test_broken_file_is_none_and_counted(tmp_path):
    _photos(tmp_path, 2)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    ds = build_dataset("image", {**DATA, "path": str(tmp_path)}, "train")
    with pytest.warns(UserWarning, match="bad.png"):
        items = [ds[i] for i in range(len(ds))]
    batch = collate(items)
    assert batch["failed"] == 1 and batch["x"].shape == (2, 3, 16, 16)
    failures = DecodeFailures(limit=1)
    failures.add(1)
    with pytest.raises(DataError, match="2 data files failed"):
        failures.add(1)


def test_epoch_sampler_depends_on_seed_and_epoch():
    s = EpochSampler(10, seed=1)
    first = list(s)
    assert sorted(first) == list(range(10)) and list(EpochSampler(10, seed=1)) == first
    s.set_epoch(1)
    assert list(s) != first
    assert list(EpochSampler(5, seed=1, shuffle=False)) == [0, 1, 2, 3, 4]
