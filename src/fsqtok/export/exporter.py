"""``export_onnx``: any fsqtok FSQ tokenizer -> ``encoder.onnx`` + ``decoder.onnx`` + ``fsqtok_onnx.json``.

The graphs are traced by ``torch.onnx.export`` (the ``torch.export`` path) from
:mod:`fsqtok.export.graphs`, with batch and every spatial or temporal input size dynamic. The JSON
states the format, the source tokenizer's :meth:`~fsqtok.hub.HubMixin.weights_hash`, the opset,
levels, stages, sample rate or fps, each graph's input and output (name, dtype, shape with named
dynamic axes), the sha256 of each graph file and the tokenizer config the graphs were made from. Before
it is written, onnxruntime runs both graphs on a small input of odd size and the agreement with PyTorch
is recorded under ``"check"``; the files appear in the output folder only after that check passed, the
JSON last, so a folder with a JSON holds a complete export.

onnx, onnxscript and onnxruntime come with ``pip install 'fsqtok[onnx]'``; they are imported here
only when an export runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..quantizers import FSQ, ResidualFSQ
from ..tokenizers import Tokenizer
from .graphs import DecodeGraph, EncodeGraph, for_graph

FORMAT = "fsqtok-onnx"
FORMAT_VERSION = 1
METADATA_NAME = "fsqtok_onnx.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
DEFAULT_OPSET = 18
# below this agreement of onnxruntime's indices with PyTorch's on the export's own check input, the export fails
MIN_AGREEMENT = 1 - 1e-4
ONNX_EXTRA = "pip install 'fsqtok[onnx]'"


class ExportError(ValueError):
    """An export that cannot be made or did not check out; the message is one line."""


def missing_onnx_packages() -> list[str]:
    """The packages of the ``onnx`` extra that cannot be imported here (empty when all are installed)."""
    import importlib

    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def check_output_dir(out_dir: str | Path) -> Path:
    """``out_dir`` must be new, empty, or an earlier export (which is replaced); never another folder's content."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file; give a folder for the exported graphs")
    if out.is_dir() and any(out.iterdir()) and not (out / METADATA_NAME).is_file():
        raise ExportError(f"{out}: is not empty and holds no {METADATA_NAME}; export into a new or empty folder")
    return out


def _check_stages(tok: Tokenizer, num_stages: int | None) -> int:
    if tok.config.quantizer == "vq":
        raise ExportError(f"{type(tok).__name__}: ONNX export covers FSQ and residual FSQ tokenizers, "
                          "not the VQ baseline")
    if not isinstance(tok.quantizer, (FSQ, ResidualFSQ)):
        raise ExportError(f"{type(tok).__name__}: ONNX export covers FSQ and residual FSQ tokenizers; its "
                          f"{type(tok.quantizer).__name__} bottleneck is not exported yet")
    if num_stages is None:
        return tok.num_stages
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 1 <= num_stages <= tok.num_stages:
        raise ExportError(f"num_stages must be an int in [1, {tok.num_stages}] (the tokenizer's stages), "
                          f"got {num_stages!r}")
    return num_stages


def export_copy(tokenizer: Tokenizer, num_stages: int) -> Tokenizer:
    """A float32 CPU eval copy of ``tokenizer`` whose quantizer has ``num_stages`` residual stages.

    The weights do not depend on the number of stages, and stage ``i`` depends only on the stages
    before it, so the copy's indices are the first ``num_stages`` stages of the original's.
    """
    config = tokenizer.config
    if config.quantizer == "rfsq":
        config = dataclasses.replace(config, num_stages=num_stages)
    copy = type(tokenizer)(config)
    copy.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
                          for k, v in tokenizer.state_dict().items()})
    return copy.float().eval()


def _example_input(tok: Tokenizer) -> Tensor:
    """A small seeded input whose sizes are not multiples of the compression (so padding is traced
    with nonzero widths), differ from each other, and are > 1 (so tracing neither unifies nor
    specializes them)."""
    g = torch.Generator().manual_seed(0)
    c = tok.config
    if tok.modality == "audio":
        return torch.rand(2, 3, 3 * tok.hop_length + 7, generator=g) - 0.5
    if tok.modality == "video":
        f, tau = tok.downsample_factor, tok.temporal_factor
        return torch.rand(2, c.in_channels, 2 + tau, f + 3, f + 1, generator=g) * 2 - 1
    f = tok.downsample_factor
    x = torch.rand(2, tok.net_channels, 2 * f + 3, f + 1, generator=g)
    if tok.modality == "image":
        return x * 2 - 1
    depth = c.min_depth * (c.max_depth / c.min_depth) ** x  # log-uniform metres
    depth[:, :, 0, 0] = 0.0  # an invalid pixel (and a NaN one): the graph masks them as encode does
    depth[:, :, 1, 1] = float("nan")
    return depth


def _token_axes(tok: Tokenizer, stages: int) -> list[Any]:
    """The indices' shape with named dynamic axes, e.g. ``["batch", 4, "tokens"]`` (stage axis fixed)."""
    lead: list[Any] = ["batch"] + (["channels"] if tok._extra_token_axes else [])
    stage = [stages] if tok.config.quantizer == "rfsq" else []
    grid = {1: ["tokens"], 2: ["tokens_h", "tokens_w"], 3: ["tokens_t", "tokens_h", "tokens_w"]}[tok.grid_ndim]
    return lead + stage + grid


def _media_axes(tok: Tokenizer, output: bool) -> list[Any]:
    """The media's shape with named dynamic axes; ``output``: the decoder's (padded) output."""
    prefix = "out_" if output else ""
    if tok.modality == "audio":
        c = "channels" if output is False or tok._extra_token_axes else 1
        return ["batch", c, prefix + "samples"]
    channels = tok.config.in_channels if tok.modality != "depth" else 1
    grid = {2: ["height", "width"], 3: ["frames", "height", "width"]}[tok.grid_ndim]
    return ["batch", channels, *(prefix + g for g in grid)]


def _dynamic(axes: list[Any]) -> dict[int, str]:
    return {i: a for i, a in enumerate(axes) if isinstance(a, str)}


def _export_graph(module: torch.nn.Module, example: Tensor, path: Path, names: tuple[str, str],
                  axes: tuple[list[Any], list[Any]], opset: int) -> None:
    """Trace ``module`` on ``example`` into ``path``; the output's dynamic axes get ``axes[1]``'s names."""
    import onnx

    program = torch.onnx.export(module.eval(), (example,), dynamo=True, input_names=[names[0]],
                                 output_names=[names[1]], dynamic_shapes=(_dynamic(axes[0]),),
                                 opset_version=opset, verbose=False)
    proto = program.model_proto
    for dim, name in zip(proto.graph.output[0].type.tensor_type.shape.dim, axes[1]):
        if isinstance(name, str):  # the tracer names them by formula, e.g. ((height + PythonMod(-height, 8))//8)
            dim.dim_param = name
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _metadata(source_tok: Tokenizer, tok: Tokenizer, num_stages: int, opset: int, source: str | None,
              folder: Path) -> dict[str, Any]:
    """The JSON record of an export (see the module docstring); ``tok`` is the exported copy."""
    from ..version import __version__

    c = tok.config
    tokens = _token_axes(tok, num_stages)
    rates = {"sample_rate": c.sample_rate, "hop_length": tok.hop_length} if tok.modality == "audio" else {}
    if tok.modality == "video":
        rates = {"fps": c.fps}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fsqtok_version": __version__,
        "modality": tok.modality, "source": source, "weights_sha256": source_tok.weights_hash(),
        "opset": opset, "quantizer": c.quantizer, "levels": list(c.levels), "codebook_size": tok.codebook_size,
        "num_stages": num_stages, "source_num_stages": source_tok.num_stages, "compression": tok._compression(),
        **rates,
        "encoder": {
            "file": ENCODER_FILE, "sha256": _sha256(folder / ENCODER_FILE),
            "input": {"name": "media", "dtype": "float32", "shape": _media_axes(tok, False), "layout": tok.layout},
            "output": {"name": "indices", "dtype": "int64", "shape": tokens,
                       "invalid": "every index is -1 when the latents were not finite"},
        },
        "decoder": {
            "file": DECODER_FILE, "sha256": _sha256(folder / DECODER_FILE),
            "input": {"name": "indices", "dtype": "int64", "shape": tokens,
                      "range": f"[0, {tok.codebook_size}), not checked inside the graph"},
            "output": {"name": "media", "dtype": "float32", "shape": _media_axes(tok, True),
                       "crop": "covers the padded size; crop each axis to the encoded input's size"},
        },
        "config": tok.hub_config(),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _self_check(folder: Path, tok: Tokenizer, example: Tensor) -> dict[str, Any]:
    """Run the written graphs with onnxruntime against PyTorch on ``example``; raise when they disagree."""
    from .runtime import OnnxTokenizer

    runtime = OnnxTokenizer(folder)
    expected = tok.encode(example)
    got = runtime.encode(example)
    agreement = float((got == expected).double().mean())
    decoded, reference = runtime.decode(expected), tok.decode(expected)
    error = float((decoded - reference).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    check = {"input_shape": list(example.shape), "indices": expected.numel(), "index_agreement": agreement,
             "decode_max_abs_error": error}
    if agreement < MIN_AGREEMENT or not error <= 1e-3 * scale:
        raise ExportError(f"onnxruntime disagrees with PyTorch on the export's check input {tuple(example.shape)}: "
                          f"{agreement:.4%} of indices equal, decode differs by up to {error:.3g}")
    return check


def export_onnx(tokenizer: Tokenizer, out_dir: str | Path, *, num_stages: int | None = None,
                opset: int = DEFAULT_OPSET, source: str | None = None) -> dict[str, Any]:
    """Export ``tokenizer`` to ``out_dir/encoder.onnx``, ``decoder.onnx`` and ``fsqtok_onnx.json``.

    Args:
        tokenizer: any fsqtok FSQ or residual-FSQ tokenizer (image, depth, audio, video).
        out_dir: a new or empty folder, or an earlier export (replaced).
        num_stages: residual FSQ: the stages the encoder emits and the decoder takes (default: all).
        opset: the ONNX opset of both graphs.
        source: where the tokenizer came from (folder or Hub repo id), recorded in the JSON.
    Returns:
        The JSON record, including ``"check"``: onnxruntime against PyTorch on a small input.
    """
    missing = missing_onnx_packages()
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: {ONNX_EXTRA}")
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"export_onnx: expected an fsqtok tokenizer, got {type(tokenizer).__name__}")
    out = check_output_dir(out_dir)
    k = _check_stages(tokenizer, num_stages)
    tok = export_copy(tokenizer, k)
    example = _example_input(tok)
    tokens = _token_axes(tok, k)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp_name:
        tmp = Path(tmp_name)
        traced = for_graph(tok)
        _export_graph(EncodeGraph(traced), example, tmp / ENCODER_FILE, ("media", "indices"),
                      (_media_axes(tok, False), tokens), opset)
        _export_graph(DecodeGraph(traced), tok.encode(example), tmp / DECODER_FILE, ("indices", "media"),
                      (tokens, _media_axes(tok, True)), opset)
        meta = _metadata(tokenizer, tok, k, opset, source, tmp)
        _write_json(tmp / METADATA_NAME, meta)
        meta["check"] = _self_check(tmp, tok, example)
        _write_json(tmp / METADATA_NAME, meta)
        (out / METADATA_NAME).unlink(missing_ok=True)  # an earlier export stops being one before its graphs go
        for name in (ENCODER_FILE, DECODER_FILE, METADATA_NAME):
            shutil.move(tmp / name, out / name)
    return meta
