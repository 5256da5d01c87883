"""``OnnxTokenizer``: an exported tokenizer folder, run by onnxruntime, called like a tokenizer.

It takes what the tokenizer takes (torch tensors or numpy arrays in the modality's convention) and
returns torch tensors, with the tokenizer's own input and token checks and one-line errors: it holds
a weightless copy of the tokenizer, built on the ``meta`` device from the config in
``fsqtok_onnx.json``, for its shapes and checks (:meth:`Tokenizer.check_input`,
:meth:`Tokenizer.tokens_shape`), so nothing about the format is written twice. The graphs
themselves need only onnxruntime; other languages read the same JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..hub import ConfigError, model_class
from ..quantizers import NonFiniteLatentError
from ..tokenizers import Tokenizer
from .exporter import FORMAT, FORMAT_VERSION, METADATA_NAME, ONNX_EXTRA, _sha256


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``fsqtok_onnx.json`` of an export folder; one-line errors name the file."""
    file = Path(path) / METADATA_NAME
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {METADATA_NAME}; not an fsqtok ONNX export "
                                "(make one with `fsqtok export`)")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{file}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{file}: not an fsqtok ONNX export record (format != {FORMAT!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ConfigError(f"{file}: format version {meta.get('format_version')} is newer than this fsqtok reads "
                          f"({FORMAT_VERSION}); upgrade fsqtok")
    return meta


def _shape_model(meta: dict[str, Any], source: str) -> Tokenizer:
    """The exported tokenizer without weights (``meta`` device): its shapes, checks and rates."""
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {METADATA_NAME} has no tokenizer config")
    klass = model_class(raw.get("model_type"), source)
    with torch.device("meta"):
        return klass(klass.config_from_hub(raw, source))


def _as_tensor(x: Any, what: str) -> Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, Tensor):
        return x.detach().cpu()
    raise TypeError(f"{what} must be a torch.Tensor or a numpy array, got {type(x).__name__}")


class OnnxTokenizer:
    """A tokenizer exported by :func:`fsqtok.export.export_onnx`, run by onnxruntime.

    Example::

        tok = OnnxTokenizer("exported/")              # encoder.onnx, decoder.onnx, fsqtok_onnx.json
        idx = tok.encode(x)                            # int64 torch tensor, as Tokenizer.encode
        x_hat = tok.decode(idx, input_shape=x.shape)   # cropped to x's size

    Args:
        path: the export folder.
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers (default: the CPU, the reference runtime).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError(f"{path}: running an ONNX export needs onnxruntime: {ONNX_EXTRA}") from None
        self.spec = _shape_model(self.metadata, str(self.path))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
        self._sessions = {}
        for graph in ("encoder", "decoder"):
            entry = self.metadata[graph]
            file = self.path / entry["file"]
            if not file.is_file() or _sha256(file) != entry["sha256"]:
                raise ConfigError(f"{file}: missing or not the graph {METADATA_NAME} describes; export again")
            self._sessions[graph] = ort.InferenceSession(str(file), options, providers=list(providers))

    # -- what a tokenizer reports
    @property
    def modality(self) -> str:
        return self.spec.modality

    @property
    def config(self):
        """The exported tokenizer's config (``num_stages`` is the exported stages)."""
        return self.spec.config

    @property
    def codebook_size(self) -> int:
        return self.spec.codebook_size

    @property
    def num_stages(self) -> int:
        """Residual stages the encoder emits and the decoder takes (1 for plain FSQ)."""
        return self.spec.num_stages

    def weights_hash(self) -> str:
        """The source tokenizer's :meth:`~fsqtok.hub.HubMixin.weights_hash`, as recorded at export."""
        return self.metadata["weights_sha256"]

    def tokens_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the indices :meth:`encode` returns for an input of ``input_shape``."""
        return self.spec.tokens_shape(input_shape)

    # -- encode / decode
    def encode(self, x: Tensor | np.ndarray) -> Tensor:
        """Media in the modality's convention (float, e.g. image ``(B, 3, H, W)`` in [-1, 1]) -> int64 indices."""
        x = _as_tensor(x, "input")
        self.spec.check_input(x)
        media = x.float().contiguous().numpy()
        indices = self._sessions["encoder"].run(None, {"media": media})[0]
        if indices.size and indices.min() < 0:
            raise NonFiniteLatentError(f"{self.path}: the latents hold NaN or infinite values, so they have no valid "
                                       "indices (check the input)")
        return torch.from_numpy(indices)

    def decode(self, indices: Tensor | np.ndarray, *, input_shape: Sequence[int] | None = None,
               num_stages: int | None = None) -> Tensor:
        """int64 indices -> media; cropped to ``input_shape`` (the encoded input's shape) when given.

        ``num_stages`` (residual FSQ) decodes from the first stages only, as ``Tokenizer.decode`` does.
        """
        spec = self.spec
        indices = spec._check_tokens(_as_tensor(indices, "indices"), num_stages)
        shape = spec._check_input_shape(indices, input_shape)
        if spec.config.quantizer == "rfsq":  # a dropped stage is the zero code, which adds exactly 0
            axis = 1 + spec._extra_token_axes
            missing = list(indices.shape)
            missing[axis] = self.num_stages - indices.shape[axis]
            indices = torch.cat([indices, indices.new_full(missing, spec.quantizer.zero_index)], dim=axis)
        y = torch.from_numpy(self._sessions["decoder"].run(None, {"indices": indices.contiguous().numpy()})[0])
        if shape is not None:
            y = y[(..., *(slice(0, s) for s in shape[-spec.grid_ndim:]))]
        return y
