"""Index shards: tokenize a dataset into Parquet shards (``fsqtok tokenize``), read them back
for training (:class:`ShardDataset`, :class:`ShardStream`) and check them (:func:`verify`).

Output layout and guarantees are described in :mod:`fsqtok.shards.writer` and
:mod:`fsqtok.shards.tokenize`.
"""

from .manifest import read_manifest
from .reader import ShardDataset, ShardStream
from .verify import verify
from .writer import token_dtype

__all__ = ["ShardDataset", "ShardStream", "read_manifest", "token_dtype", "verify"]
