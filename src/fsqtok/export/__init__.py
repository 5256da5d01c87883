"""Serve fsqtok tokenizers outside PyTorch: ONNX export and its runtime helper.

    from fsqtok.export import export_onnx, OnnxTokenizer
    export_onnx(tokenizer, "exported/")         # encoder.onnx, decoder.onnx, fsqtok_onnx.json
    tok = OnnxTokenizer("exported/")             # onnxruntime; encode/decode as the tokenizer

The command line is ``fsqtok export --tokenizer T --format onnx -o OUT``. Importing this package
needs no ONNX package; exporting needs onnx, onnxscript and onnxruntime, running an export
onnxruntime only (``pip install 'fsqtok[onnx]'``).
"""

from .exporter import (DECODER_FILE, ENCODER_FILE, METADATA_NAME, ExportError, check_output_dir, export_onnx,
                       missing_onnx_packages)
from .runtime import OnnxTokenizer, read_metadata

__all__ = ["DECODER_FILE", "ENCODER_FILE", "METADATA_NAME", "ExportError", "OnnxTokenizer", "check_output_dir",
           "export_onnx", "missing_onnx_packages", "read_metadata"]
