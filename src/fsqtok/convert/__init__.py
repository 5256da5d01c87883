"""Converters from released checkpoints (NVIDIA Cosmos, NeMo) to fsqtok model folders.

``fsqtok convert <family> SRC -o OUT`` (see :mod:`fsqtok.convert.cli`); each family's module
``fsqtok.convert.<family>`` has ``convert_<family>(path, ...) -> Converted``.
"""

from .core import Converted, load_strict, model_card, resolve_source, sha256_file, torch_load_safe, write_converted

__all__ = ["Converted", "load_strict", "model_card", "resolve_source", "sha256_file", "torch_load_safe",
           "write_converted"]
