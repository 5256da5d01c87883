"""Paired (image, target) datasets for UViM's tasks, built offline from packaged media.

``UViMPairs(task, split, length, size, seed)[i]`` is ``{"image": (3, s, s) in [-1, 1], "target": ...}``:

* ``depth``: :mod:`.rgbd` ray-cast scenes, target ``(1, s, s)`` metres;
* ``colorization``: real photo crops (:func:`fsqtok.datasets.samples.sample_images`; train and val/test use
  different photos), target = the RGB crop itself (the model sees its grey version);
* ``panoptic``: :mod:`.panoptic` scenes, target int64 ``(2, s, s)`` (class, instance).

Item ``i`` is a pure function of ``(task, split, seed, i)``: no files, any length, exact resume.

:class:`UViMFolderPairs` reads the user's own pairs through the shared paired layer
(:class:`fsqtok.data.PairedFolderSource` + :class:`~fsqtok.data.PairedDataset`): sub-folders
``image/`` and ``depth/`` (depth), ``image/`` (colorization), or ``image/``, ``semantic/`` and ``instance/``
(panoptic: label-map PNGs or ``.npy``), matched by file stem.
``cache=True`` keeps rendered items in memory, for a small training set seen for several epochs;
``cache_dir=DIR`` also renders the whole set once into ``DIR/uvim-<task>-<split>-n<length>-s<size>-seed<seed>-g<code>.pt``
and later datasets with the same arguments (other runs of a benchmark) load it instead of rendering;
``<code>`` fingerprints the generators' source, so a changed generator renders afresh, never loads stale pairs.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from . import panoptic, rgbd, samples, textures
from ..data.fingerprint import data_fingerprint
from ..data.paired import Field, PairedDataset, PairedFolderSource
from ..files import atomic_path
from .panoptic import synthetic_panoptic
from ..data.preprocess import DataError
from .rgbd import SPLITS, synthetic_rgbd
from .samples import sample_images

PAIR_TASKS = ("depth", "colorization", "panoptic")
PHOTO_CHUNK = 64
FOLDER_FIELDS = {"depth": (Field("image", "image"), Field("depth", "depth")), "colorization": (Field("image", "image"),),
                 "panoptic": (Field("image", "image"), Field("semantic", "label"), Field("instance", "label"))}


@lru_cache(maxsize=None)
def generator_fingerprint() -> str:
    """12 hex digits of the sha256 of the pair generators' source (this module, rgbd, panoptic, samples, textures)."""
    h = hashlib.sha256()
    for module in (rgbd, panoptic, samples, textures):
        h.update(Path(module.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


class UViMPairs(torch.utils.data.Dataset):
    """Map-style dataset of ``length`` pairs for ``task`` (see module docstring)."""

    def __init__(self, task: str, split: str, length: int, size: int = 64, seed: int = 0, cache: bool = False,
                 cache_dir: str | Path | None = None) -> None:
        if task not in PAIR_TASKS:
            raise ValueError(f"task must be one of {', '.join(PAIR_TASKS)}, got {task!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if length < 1 or size < 8:
            raise ValueError(f"need length >= 1 and size >= 8, got {length}, {size}")
        self.task, self.split, self.length, self.size, self.seed = task, split, length, size, seed
        self._chunk: tuple[int, Tensor] | None = None
        self._cache: dict[int, dict[str, Tensor]] | None = {} if cache or cache_dir else None  # ~length x item size
        if cache_dir is not None:
            self._load_or_render(self.cache_file(cache_dir))

    def fingerprint(self) -> str:
        """The content hash of this set (:func:`~fsqtok.data.data_fingerprint` of every argument that
        makes it and the generators' source hash): equal fingerprints, equal pairs."""
        return data_fingerprint({"uvim_pairs": self.task, "split": self.split, "length": self.length,
                                 "size": self.size, "seed": self.seed, "generator": generator_fingerprint()})

    def cache_file(self, cache_dir: str | Path) -> Path:
        """Where ``cache_dir=`` keeps this set: named by every argument and the generators' fingerprint."""
        return (Path(cache_dir) / f"uvim-{self.task}-{self.split}-n{self.length}-s{self.size}-seed{self.seed}"
                f"-g{generator_fingerprint()}.pt")

    def _load_or_render(self, path: Path) -> None:
        """Fill the memory cache from ``path``, or render every item and write ``path`` (atomically)."""
        if path.is_file():
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
                image, target = data["image"], data["target"]
            except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
                raise DataError(f"{path}: not a readable UViM pair cache ({e}); delete it to render again") from None
            if len(image) != self.length or len(target) != self.length or image.shape[-1] != self.size:
                raise DataError(f"{path}: holds {len(image)} pairs of size {image.shape[-1]}, expected {self.length} "
                                f"of size {self.size}; delete it to render again")
            self._cache.update({i: {"image": image[i], "target": target[i]} for i in range(self.length)})
            return
        items = [self[i] for i in range(self.length)]
        with atomic_path(path, unique=True) as tmp:  # concurrent runs may render the same cache file
            torch.save({"image": torch.stack([it["image"] for it in items]),
                        "target": torch.stack([it["target"] for it in items])}, tmp)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        if self._cache is not None:
            if i not in self._cache:
                self._cache[i] = self._make(i)
            return self._cache[i]
        return self._make(i)

    def _make(self, i: int) -> dict[str, Tensor]:
        if self.task == "depth":
            x, y = synthetic_rgbd(1, self.size, self.split, self.seed, start=i)
        elif self.task == "panoptic":
            x, y = synthetic_panoptic(1, self.size, self.split, self.seed, start=i)
        else:
            x = y = self._photo_chunk(i // PHOTO_CHUNK)[i % PHOTO_CHUNK][None]
        return {"image": x[0], "target": y[0]}

    def _photo_chunk(self, c: int) -> Tensor:
        """Crops ``c * PHOTO_CHUNK ...`` drawn in one :func:`sample_images` call (the photos load once per chunk)."""
        if self._chunk is None or self._chunk[0] != c:
            photos = "train" if self.split == "train" else "val"
            seed = (self.seed * 1_000_003 + SPLITS[self.split]) * 7_919 + c
            self._chunk = (c, sample_images(PHOTO_CHUNK, self.size, photos, seed=seed))
        return self._chunk[1]


class UViMFolderPairs(torch.utils.data.Dataset):
    """The user's pairs for ``task`` from a folder (module docstring), fitted to ``size x size``:
    random crops (``min_scale`` of the short side) and flips for training, centre crops otherwise."""

    def __init__(self, task: str, root: str, size: int, train: bool, seed: int = 0, min_scale: float = 0.5) -> None:
        if task not in FOLDER_FIELDS:
            raise ValueError(f"task must be one of {', '.join(FOLDER_FIELDS)}, got {task!r}")
        self.task = task
        source = PairedFolderSource(root, FOLDER_FIELDS[task])
        self.data = PairedDataset(source, size, crop="random" if train else "center",
                                  min_scale=min_scale if train else 1.0, flip=train, seed=seed)

    def __len__(self) -> int:
        return len(self.data)

    def fingerprint(self) -> str:
        """The content hash of the pair folder (:func:`~fsqtok.data.data_fingerprint`)."""
        return data_fingerprint(self.data.source.root)

    def set_epoch(self, epoch: int) -> None:
        self.data.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.data[i]
        if item is None:
            raise DataError(f"pair {self.data.source.keys[i]} could not be read (see the warning above)")
        if self.task == "depth":
            target = item["depth"]
        elif self.task == "panoptic":
            target = torch.stack([item["semantic"], item["instance"]])
        else:
            target = item["image"]
        return {"image": item["image"], "target": target}
