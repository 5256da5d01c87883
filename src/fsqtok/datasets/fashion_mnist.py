"""Fashion-MNIST from its raw idx files, offline: 70,000 grey 28x28 product photos in 10 classes.

The files are the ones ``torchvision.datasets.FashionMNIST`` reads, found in any of

    <root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]              (e.g. Debian's dataset-fashion-mnist)
    <root>/FashionMNIST/raw/{...}                                         (torchvision's layout)

Nothing is ever downloaded. With ``root=None`` the folder named by ``$FSQTOK_FASHION_MNIST`` is used, or
else the Debian package's folder (the test suite points the variable at a committed subset of real items).

    images, labels = load_fashion_mnist("test")        # uint8 (10000, 28, 28), int64 (10000,)
    export_image_folder("train", "/data/fmnist/train") # /data/fmnist/train/<class folder>/<index>.png

:func:`export_image_folder` writes what ``fsqtok tokenize --labels folder`` and the tokenizer
recipe's ``data.source=folder`` read: one sub-folder per class, named ``<id>_<name>`` so that the
sorted folder names follow the class ids.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.batching import DataError

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
ROOT_ENV = "FSQTOK_FASHION_MNIST"  # a folder of the raw idx files that replaces DEBIAN_ROOT as the default
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FOLDER_NAMES = tuple(f"{i}_{name.lower().replace('/', '_').replace('-', '').replace(' ', '_')}"
                     for i, name in enumerate(CLASSES))
SPLITS = {"train": "train", "test": "t10k"}
HOW_TO_GET = ("install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or pass the "
              f"folder holding the raw idx files (or torchvision's FashionMNIST/raw) as root or in ${ROOT_ENV}")
_MAGIC = {"images": (2051, 3), "labels": (2049, 1)}  # idx magic numbers: ubyte data with 3 or 1 dimensions


def _find(root: Path, split: str, kind: str) -> Path:
    stem = f"{SPLITS[split]}-{'images-idx3' if kind == 'images' else 'labels-idx1'}-ubyte"
    for folder in (root, root / "FashionMNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"Fashion-MNIST: no {stem}[.gz] in {root} or {root / 'FashionMNIST' / 'raw'}; {HOW_TO_GET}")


def _read_idx(path: Path, kind: str) -> np.ndarray:
    """One idx file -> uint8 array ``(N, 28, 28)`` (images) or ``(N,)`` (labels)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable ({e}); {HOW_TO_GET}") from None
    magic, ndim = _MAGIC[kind]
    head = 4 + 4 * ndim
    if len(data) < head or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(f"{path}: not an idx {kind} file (magic {magic} expected); {HOW_TO_GET}")
    shape = struct.unpack(f">{ndim}I", data[4:head])
    if len(data) - head != int(np.prod(shape)):
        raise DataError(f"{path}: {len(data) - head} data bytes where the header declares {int(np.prod(shape))} "
                        f"(truncated file?); {HOW_TO_GET}")
    return np.frombuffer(data, np.uint8, offset=head).reshape(shape)


def default_root() -> Path:
    """``$FSQTOK_FASHION_MNIST`` when set, else Debian's folder."""
    return Path(os.environ[ROOT_ENV]) if os.environ.get(ROOT_ENV) else DEBIAN_ROOT


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``split`` ("train": 60,000 or "test": 10,000) -> images uint8 ``(N, 28, 28)``, labels int64 ``(N,)``."""
    if split not in SPLITS:
        raise DataError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
    base = default_root() if root is None else Path(root)
    images = _read_idx(_find(base, split, "images"), "images")
    labels = _read_idx(_find(base, split, "labels"), "labels").astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"Fashion-MNIST {split} in {base}: {len(images)} images but {len(labels)} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"Fashion-MNIST {split} in {base}: label {labels.max()} outside 0..{len(CLASSES) - 1}")
    return images, labels


def to_tensor(images: np.ndarray, channels: int = 3) -> Tensor:
    """uint8 ``(N, 28, 28)`` -> float ``(N, channels, 28, 28)`` in [-1, 1] (the tokenizers' image convention)."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(127.5).sub_(1.0)
    return x[:, None].expand(-1, channels, -1, -1).contiguous()


def export_image_folder(split: str, out_dir: str | Path, root: str | Path | None = None,
                        indices: slice | np.ndarray | None = None) -> int:
    """Write ``split`` (or its ``indices``) as grey PNGs ``out_dir/<class folder>/<index:05d>.png``; returns the count.

    Files already present are kept (an interrupted export resumes); the file name is the item's
    index in the split, so two exports of the same items hold the same keys.
    """
    from PIL import Image

    images, labels = load_fashion_mnist(split, root)
    picked = np.arange(len(images))[indices] if indices is not None else np.arange(len(images))
    out = Path(out_dir)
    for name in FOLDER_NAMES:
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in picked.tolist():
        path = out / FOLDER_NAMES[labels[i]] / f"{i:05d}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            Image.fromarray(images[i]).save(tmp, format="PNG")
            tmp.replace(path)
    return len(picked)
