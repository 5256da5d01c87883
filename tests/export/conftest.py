"""Small tokenizers of every modality (``onnx_checks.CASES``), exported once per session."""

from __future__ import annotations

import pytest
import torch

from onnx_checks import CASES

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)`` -> ``(PyTorch tokenizer with the exported stages, OnnxTokenizer, export folder, source)``."""
    from fsqtok.export import OnnxTokenizer, export_onnx
    from fsqtok.export.exporter import export_copy

    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            build, stages = CASES[name]
            torch.manual_seed(0)
            source = build().eval()
            out = tmp_path_factory.mktemp(f"onnx_{name}")
            export_onnx(source, out, num_stages=stages, source=f"test:{name}")
            tok = export_copy(source, stages or source.num_stages)
            cache[name] = (tok, OnnxTokenizer(out, threads=1), out, source)
        return cache[name]

    return get
