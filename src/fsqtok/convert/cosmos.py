"""``fsqtok convert cosmos``: NVIDIA Cosmos-Tokenizer checkpoints -> fsqtok Cosmos tokenizer folders.

Sources (a folder, or one file):

* the released TorchScript files ``encoder.jit`` + ``decoder.jit`` (or ``autoencoder.jit``), read
  only with ``allow_torchscript=True``: TorchScript is compiled code. Their state dicts keep the
  buffers the reference registers, among them the FSQ levels and the video patch size.
* the reference model's ``state_dict()`` as ``.safetensors`` (or a weights-only ``.pt``/``.ckpt``),
  under the reference's own tensor names.

The architecture is read from the weights (:func:`fsqtok.convert.cosmos_arch.infer_kwargs`); what
they do not determine comes from the variant name in the path (``DV4x8x8``) or ``config``, the
reference constructor's kwargs (``--config KWARGS.json``), else the reference defaults. Every source
tensor is loaded into the port or, for buffers the architecture fixes (FSQ place values and
codebook, wavelet taps), checked and listed as skipped.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from ..hub import CheckpointError, ConfigError
from ..quantizers import FSQ
from ..tokenizers.cosmos import CosmosImageConfig, CosmosImageTokenizer, CosmosVideoConfig, CosmosVideoTokenizer
from .core import Converted, load_strict, sha256_file, torch_load_safe
from .cosmos_arch import DEFAULT_LEVELS, WAVELETS, attn_resolutions, infer_kwargs, is_video, port_state, rename, \
    variant_kwargs

LICENSE_NAME = "NVIDIA Open Model License"
LICENSE_TEXT = ("the released Cosmos-Tokenizer weights are under the NVIDIA Open Model License Agreement "
                "(https://developer.download.nvidia.com/licenses/nvidia-open-model-license-agreement-june-2024.pdf); "
                "the reference code is Apache-2.0 (https://github.com/NVIDIA/Cosmos-Tokenizer). "
                "See the source's own model card for the terms of these weights.")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
# reference kwargs that do not change the discrete networks at inference, and why
IGNORED_KWARGS = {"dropout": "training only", "name": "a label", "num_quantizers": "residual FSQ only",
                  "num_groups": "unused by the factorized networks", "z_factor": "unused by the image networks"}
NETWORK_NAMES = {False: ("Default",), True: ("FACTORIZED",)}  # the reference's encoder/decoder types we port


class TorchScriptRefused(PermissionError):
    """A TorchScript source without ``allow_torchscript``."""


def source_files(path: Path, allow_torchscript: bool) -> tuple[list[Path], dict[str, str]]:
    """The files to read from ``path``, and ``{file name: why it is not read}``."""
    skipped: dict[str, str] = {}
    if path.is_file():
        files = [path]
    elif (path / "encoder.jit").is_file() and (path / "decoder.jit").is_file():
        files = [path / "encoder.jit", path / "decoder.jit"]
        if (path / "autoencoder.jit").is_file():
            skipped["autoencoder.jit"] = "not read: the same weights as encoder.jit and decoder.jit"
    elif (path / "autoencoder.jit").is_file():
        files = [path / "autoencoder.jit"]
    else:
        files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if len(files) != 1:
            found = ", ".join(p.name for p in files) or "none"
            raise CheckpointError(f"{path}: expected encoder.jit + decoder.jit, autoencoder.jit, or one weights file "
                                  f"({', '.join(WEIGHT_SUFFIXES)}); found {found}")
    if not allow_torchscript and any(f.suffix == ".jit" for f in files):
        raise TorchScriptRefused(f"{files[0]}: TorchScript is compiled code and is read only with "
                                 "--allow-torchscript (pass it for files you trust)")
    return files, skipped


def read_tensors(file: Path) -> dict[str, Tensor]:
    """The named tensors of one source file (TorchScript: its state dict, buffers included)."""
    if file.suffix == ".jit":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": the files are TorchScript
                return dict(torch.jit.load(str(file), map_location="cpu").state_dict())
        except RuntimeError as e:
            raise CheckpointError(f"{file}: not a readable TorchScript file ({' '.join(str(e).split())[:200]})") from None
    if file.suffix == ".safetensors":
        try:
            return load_file(str(file))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None
    state = torch_load_safe(file)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(t, Tensor) for t in state.values()):
        raise CheckpointError(f"{file}: expected a state dict of tensors")
    return dict(state)


def _kwargs(given: dict[str, Any], inferred: dict[str, Any], video: bool, path: Path, where: str) -> dict[str, Any]:
    """Reference kwargs: the checkpoint's, then ``given``, the variant name in ``path``, the defaults."""
    config_class = CosmosVideoConfig if video else CosmosImageConfig
    fields = {f.name for f in dataclasses.fields(config_class)} - {"quantizer", "num_stages", "quantize_dropout",
                                                                    "latent_channels", "residual_stage_scale",
                                                                    "vq_dead_code_threshold"}
    unknown = sorted(set(given) - fields - set(IGNORED_KWARGS) - {"quantizer", "encoder", "decoder"})
    if unknown:
        raise ConfigError(f"--config: unknown kwarg(s) {', '.join(unknown)} for a Cosmos discrete "
                          f"{'video' if video else 'image'} tokenizer")
    if given.get("quantizer", "FSQ") != "FSQ":
        raise ConfigError(f"--config: quantizer {given['quantizer']!r}: only FSQ Cosmos tokenizers are supported")
    for key in ("encoder", "decoder"):
        if given.get(key, NETWORK_NAMES[video][0]) not in NETWORK_NAMES[video]:
            raise ConfigError(f"--config: {key} {given[key]!r}: fsqtok ports the {NETWORK_NAMES[video][0]} networks only")
    for key, value in inferred.items():
        if key in given and given[key] != value:
            raise ConfigError(f"--config: {key}={given[key]!r}, but {where} has {key}={value!r}")
    kw = {**variant_kwargs(path), **{k: v for k, v in given.items() if k in fields}, **inferred}
    if video and not {"temporal_compression", "spatial_compression"} <= set(kw):
        raise ConfigError(f"{where}: a video tokenizer's temporal and spatial compression leave no trace in its "
                          "weights; pass --config KWARGS.json with both (DV4x8x8: temporal_compression 4, "
                          "spatial_compression 8), or keep the variant name in the folder name")
    kw.setdefault("levels", DEFAULT_LEVELS)
    return kw


def _check_buffers(state: dict[str, Tensor], config: CosmosImageConfig, where: str) -> dict[str, str]:
    """Buffers the architecture fixes: check each against it; ``{name: reason}`` to skip them."""
    levels = list(config.levels)
    basis = [math.prod(levels[:i]) for i in range(len(levels))]
    checks = {
        "._basis": ("FSQ place values, fixed by levels", lambda t: t.tolist() == basis),
        ".implicit_codebook": ("FSQ codebook, fixed by levels",
                               lambda t: torch.equal(t, FSQ(levels).codebook.to(t.dtype))),
        ".wavelets": ("patching filter taps, fixed by patch_method",
                      lambda t: torch.allclose(t.float(), torch.full((2,), WAVELETS[config.patch_method]))),
        "._arange": ("patching filter index, fixed", lambda t: t.tolist() == [0, 1]),
    }
    skipped = {}
    for name, t in state.items():
        for suffix, (reason, ok) in checks.items():
            if name.endswith(suffix):
                if not ok(t):
                    raise CheckpointError(f"{where}: {name} does not fit the architecture read from the checkpoint")
                skipped[name] = f"{reason} (checked)"
    return skipped


def _config_buffers(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Remove the buffers read into the config (FSQ levels, video patch size); the encoder's and decoder's must agree."""
    levels = [state.pop(k) for k in ("quantizer._levels", "inv_quant.quantizer._levels") if k in state]
    if len(levels) == 2 and not torch.equal(levels[0], levels[1]):
        raise CheckpointError(f"{where}: encoder and decoder FSQ levels differ ({levels[0].tolist()} vs {levels[1].tolist()})")
    used = {"quantizer._levels": levels[0]} if levels else {}
    if "encoder.patcher3d.patch_size_buffer" in state:
        used["encoder.patcher3d.patch_size_buffer"] = state.pop("encoder.patcher3d.patch_size_buffer")
    return used


def convert_cosmos(path: Path, config: dict[str, Any] | None = None, allow_torchscript: bool = False) -> Converted:
    """Convert a Cosmos-Tokenizer checkpoint at ``path`` (see the module docstring) to an fsqtok tokenizer."""
    path = Path(path)
    files, skipped_files = source_files(path, allow_torchscript)
    where = str(path)
    state: dict[str, Tensor] = {}
    for file in files:
        state.update(read_tensors(file))
    video = is_video(state, where)
    used = _config_buffers(state, where)
    inferred, attn_levels = infer_kwargs({**state, **used}, video, where, config or {})
    kw = _kwargs(config or {}, inferred, video, path, where)
    kw.setdefault("resolution", CosmosImageConfig.resolution)  # the reference default; it only places attention
    if "attn_resolutions" not in kw:
        kw["attn_resolutions"] = attn_resolutions(attn_levels, kw, video)
    config_class, model_class = (CosmosVideoConfig, CosmosVideoTokenizer) if video else \
        (CosmosImageConfig, CosmosImageTokenizer)
    try:
        cfg = config_class(**kw)
        model = model_class(cfg)
    except (ConfigError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    skip = _check_buffers(state, cfg, where)
    tensors = port_state({k: v for k, v in state.items() if k not in skip}, model.state_dict(), where)
    load_strict(model, {**tensors, **{k: state[k] for k in skip}}, rename, where,
                skip={re.escape(k): why for k, why in skip.items()})
    hashes = {f.name: sha256_file(f) for f in files}
    return Converted(model=model.eval(), source=where, license_name=LICENSE_NAME, license_text=LICENSE_TEXT,
                     source_files=hashes, skipped={**skipped_files, **skip})
