"""fsqtok: discrete tokens for images, depth, audio and video on a Finite Scalar Quantization bottleneck."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .hub import HubMixin
    from .tokenizers import Tokenizer


def load_tokenizer(path_or_repo_id: str, **kwargs: Any) -> Tokenizer:
    """Load a saved tokenizer (local folder or Hub repo id); config.json picks the class.

    See :func:`fsqtok.tokenizers.load_tokenizer`. Importing ``fsqtok`` stays light: torch and
    the models are imported on first call.
    """
    from .tokenizers import load_tokenizer as _load

    return _load(path_or_repo_id, **kwargs)


def load_pretrained(path_or_repo_id: str, **kwargs: Any) -> HubMixin:
    """Load any saved fsqtok model (tokenizer, MaskGIT, UViM, ...); config.json's ``model_type`` picks the class.

    See :func:`fsqtok.hub.load_pretrained` (``kwargs``: ``revision``, ``cache_dir``,
    ``local_files_only``, ``token``, ``force_download``, ``map_location``).
    """
    from .hub import load_pretrained as _load

    return _load(path_or_repo_id, **kwargs)


__all__ = ["__version__", "load_pretrained", "load_tokenizer"]
