"""The data layer: where samples come from, and the one preprocessing every path shares.

* :mod:`~fsqtok.data.preprocess`: :class:`Preprocess` (decode with :mod:`fsqtok.media`, resize,
  crop) used by training, evaluation and ``fsqtok tokenize``; :func:`fit_spatial` and :class:`Box`.
* :mod:`~fsqtok.data.folder`: :class:`FolderSource` (a tree of media files; labels from
  sub-folders or a CSV/JSONL sidecar).
* :mod:`~fsqtok.data.hf`: :class:`HFSource` / :class:`StreamSource` (Hugging Face ``datasets``:
  local, Hub, streaming).
* :mod:`~fsqtok.data.paired`: samples with several aligned fields (image + depth, image +
  semantic + instance ...): :class:`Field`, :class:`PairedFolderSource`, :class:`PairedHFSource`,
  :class:`PairedDataset`.
* :mod:`~fsqtok.data.token_shards`: :class:`ShardDataset`, :class:`ShardStream` (the index shards
  that ``fsqtok tokenize`` writes; :mod:`fsqtok.shards` writes and verifies them).
* :mod:`~fsqtok.data.fingerprint`: :func:`data_fingerprint`, the content hash a run records of its data.
* :mod:`~fsqtok.data.batching`: the training recipe's datasets (:func:`build_dataset`, :func:`collate`,
  :class:`EpochSampler`, :class:`DecodeFailures`); built-in and rendered data: :mod:`fsqtok.datasets`.
"""

from .batching import (DecodeFailures, EpochSampler, build_dataset, collate, dataset_fingerprint, metrics_kind,
                       metrics_note, split_sizes, training_preprocess)
from .fingerprint import data_fingerprint
from .folder import FolderSource, read_label_sidecar
from .hf import DATA_FORMATS, HFSource, StreamSource, detect_format
from .loading import SourceDataset
from .label_maps import read_label_map
from .paired import Field, PairedDataset, PairedFolderSource, PairedHFSource
from .preprocess import Box, DataError, Preprocess, extensions, fit_spatial
from .token_shards import ShardDataset, ShardStream, read_manifest

__all__ = [
    "Box", "DATA_FORMATS", "DataError", "DecodeFailures", "EpochSampler", "Field", "FolderSource", "HFSource",
    "PairedDataset", "PairedFolderSource", "PairedHFSource", "Preprocess", "ShardDataset", "ShardStream",
    "SourceDataset", "StreamSource", "build_dataset", "collate", "data_fingerprint", "dataset_fingerprint",
    "detect_format", "extensions", "fit_spatial", "metrics_kind", "metrics_note", "split_sizes",
    "read_label_map", "read_label_sidecar", "read_manifest", "training_preprocess",
]
