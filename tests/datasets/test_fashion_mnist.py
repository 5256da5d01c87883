"""Fashion-MNIST loader and image-folder export, on tiny synthetic idx files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsqtok.data import DataError
from fsqtok.datasets.fashion_mnist import FOLDER_NAMES, export_image_folder, load_fashion_mnist, to_tensor


def write_idx(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    stem = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    opener, ext = (gzip.open, ".gz") if gz else (open, "")
    with opener(folder / f"{stem}-images-idx3-ubyte{ext}", "wb") as f:
        f.write(struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes())
    with opener(folder / f"{stem}-labels-idx1-ubyte{ext}", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def fake():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 3, 1, 7], dtype=np.uint8)
    return images, labels


def test_reads_the_raw_files_exactly(tmp_path, fake):
    images, labels = fake
    write_idx(tmp_path, "test", images, labels)
    x, y = load_fashion_mnist("test", tmp_path)
    assert x.dtype == np.uint8 and x.shape == (6, 28, 28)
    np.testing.assert_array_equal(x, images)
    assert y.dtype == np.int64 and y.tolist() == labels.tolist()


def test_torchvision_layout_and_uncompressed_files(tmp_path, fake):
    images, labels = fake
    write_idx(tmp_path / "FashionMNIST" / "raw", "train", images, labels, gz=False)
    x, y = load_fashion_mnist("train", tmp_path)
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == labels.tolist()


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as e:
        load_fashion_mnist("train", tmp_path)
    assert "\n" not in str(e.value) and "train-images-idx3-ubyte" in str(e.value)


def test_bad_split_and_bad_files(tmp_path, fake):
    images, labels = fake
    with pytest.raises(DataError, match="'train' or 'test'"):
        load_fashion_mnist("val", tmp_path)
    write_idx(tmp_path, "test", images, labels)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = gzip.open(path).read()
    with gzip.open(path, "wb") as f:  # truncated: the header declares more bytes than follow
        f.write(data[:-5])
    with pytest.raises(DataError, match="truncated"):
        load_fashion_mnist("test", tmp_path)
    with gzip.open(path, "wb") as f:  # a labels header in the images file
        f.write(struct.pack(">II", 2049, 6) + bytes(6))
    with pytest.raises(DataError, match="not an idx images file"):
        load_fashion_mnist("test", tmp_path)


def test_label_count_must_match(tmp_path, fake):
    images, labels = fake
    write_idx(tmp_path, "test", images, labels[:4])
    with pytest.raises(DataError, match="6 images but 4 labels"):
        load_fashion_mnist("test", tmp_path)


def test_to_tensor_range_and_channels(fake):
    images, _ = fake
    x = to_tensor(images, channels=3)
    assert x.shape == (6, 3, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 2])
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 127.5 - 1)
    assert float(to_tensor(np.array([[[0, 255]]], np.uint8)).min()) == -1.0


def test_export_image_folder_writes_class_folders(tmp_path, fake):
    images, labels = fake
    write_idx(tmp_path / "raw", "test", images, labels)
    out = tmp_path / "out"
    assert export_image_folder("test", out, root=tmp_path / "raw", indices=slice(1, 5)) == 4
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == sorted(f"{FOLDER_NAMES[labels[i]]}/{i:05d}.png" for i in range(1, 5))
    assert sorted(FOLDER_NAMES) == list(FOLDER_NAMES)  # sorted folder names follow the class ids
    back = np.asarray(Image.open(out / FOLDER_NAMES[labels[2]] / "00002.png"))
    np.testing.assert_array_equal(back, images[2])  # lossless, grey
    # an existing file is kept (resume), a missing one is written
    (out / FOLDER_NAMES[labels[1]] / "00001.png").write_bytes(b"keep")
    (out / FOLDER_NAMES[labels[3]] / "00003.png").unlink()
    export_image_folder("test", out, root=tmp_path / "raw", indices=slice(1, 5))
    assert (out / FOLDER_NAMES[labels[1]] / "00001.png").read_bytes() == b"keep"
    assert (out / FOLDER_NAMES[labels[3]] / "00003.png").is_file()
    assert not list(out.rglob("*.tmp"))


def test_the_tokenizer_recipe_reads_the_export(tmp_path, fake):
    from fsqtok.data import build_dataset

    images, labels = fake
    write_idx(tmp_path / "raw", "train", images, labels)
    export_image_folder("train", tmp_path / "out", root=tmp_path / "raw")
    data = {"source": "folder", "path": str(tmp_path / "out"), "val_path": None, "size": 28, "frames": 1,
            "seconds": 1.0, "num_train": 0, "num_val": 0, "sample_seed": 0}
    ds = build_dataset("image", data, "train")
    assert len(ds) == 6
    first = sorted(range(6), key=lambda i: (FOLDER_NAMES[labels[i]], i))[0]
    assert torch.allclose(ds[0], to_tensor(images[first:first + 1])[0], atol=1e-6)


def test_the_default_root_comes_from_the_environment_then_debian(tmp_path, fake, monkeypatch):
    images, labels = fake
    write_idx(tmp_path / "env", "test", images, labels)
    monkeypatch.setenv("FSQTOK_FASHION_MNIST", str(tmp_path / "env"))
    x, y = load_fashion_mnist("test")
    assert np.array_equal(x, images) and np.array_equal(y, labels)
    monkeypatch.setenv("FSQTOK_FASHION_MNIST", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"empty.*apt-get install dataset-fashion-mnist.*FSQTOK_FASHION_MNIST"):
        load_fashion_mnist("test")
    monkeypatch.delenv("FSQTOK_FASHION_MNIST")
    from fsqtok.datasets import fashion_mnist
    assert fashion_mnist.default_root() == fashion_mnist.DEBIAN_ROOT


def test_the_committed_fixture_is_real_fashion_mnist():
    """tests/fixtures/fashion_mnist (see its README): 600 + 200 real items, all 10 classes in each split."""
    for split, n in (("train", 600), ("test", 200)):
        x, y = load_fashion_mnist(split)
        assert x.shape == (n, 28, 28) and sorted(set(y.tolist())) == list(range(10))
    assert y[:5].tolist() == [9, 2, 1, 1, 6]  # the first test labels of the real data set
