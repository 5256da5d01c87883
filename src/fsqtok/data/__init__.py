"""The data layer: datasets for training and evaluation, and built-in sample data (see :mod:`fsqtok.data.samples`)."""

from .datasets import DataError, DecodeFailures, EpochSampler, build_dataset, collate

__all__ = ["DataError", "DecodeFailures", "EpochSampler", "build_dataset", "collate"]
