"""Index shards: tokenize a dataset into Parquet shards (:func:`tokenize` over a :class:`TokenizeJob`;
``fsqtok tokenize`` is :mod:`fsqtok.shards.cli`), read them back for training (:class:`ShardDataset`,
:class:`ShardStream`, from :mod:`fsqtok.data.token_shards`) and check them (:func:`verify`).

Output layout and guarantees are described in :mod:`fsqtok.shards.writer` and
:mod:`fsqtok.shards.pipeline`.
"""

from ..data.token_shards import ShardDataset, ShardStream, read_manifest
from .job import JobError, TokenizeJob
from .pipeline import tokenize
from .verify import verify
from .writer import token_dtype

__all__ = ["JobError", "ShardDataset", "ShardStream", "TokenizeJob", "read_manifest", "token_dtype", "tokenize",
           "verify"]
