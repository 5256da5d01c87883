"""fsqtok: discrete tokens for images, depth, audio and video on a Finite Scalar Quantization bottleneck."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .tokenizers import Tokenizer


def load_tokenizer(path_or_repo_id: str, **kwargs: Any) -> Tokenizer:
    """Load a saved tokenizer (local folder or Hub repo id); config.json's ``modality`` picks the class.

    See :func:`fsqtok.tokenizers.load_tokenizer`. Importing ``fsqtok`` stays light: torch and
    the models are imported on first call.
    """
    from .tokenizers import load_tokenizer as _load

    return _load(path_or_repo_id, **kwargs)


__all__ = ["__version__", "load_tokenizer"]
