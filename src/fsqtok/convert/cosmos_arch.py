"""Read a Cosmos-Tokenizer architecture from its weights, and map its tensor names onto fsqtok's port.

:func:`infer_kwargs` gives the reference constructor kwargs that the checkpoint determines (widths,
levels, blocks, attention, patching, FSQ levels from the TorchScript buffer); what it cannot see
(the video compressions, which leave no trace in the weights) comes from the variant name in the
source path (``DV4x8x8``) or the user's ``--config``. :func:`port_state` renames the reference's
tensors to the port's (``nin_shortcut`` -> ``skip``, ``conv3d`` wrappers dropped, attention
``q``/``k``/``v`` merged into ``qkv``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..hub import CheckpointError

DEFAULT_LEVELS = [8, 8, 8, 5, 5, 5]  # the reference configs' FSQ levels
VARIANT = re.compile(r"D([IV])(\d+)x(\d+)(?:x(\d+))?")  # DI8x8, DV4x8x8, ... in a folder or repo name
WAVELETS = {"haar": 2 ** -0.5, "rearrange": 1.0}  # the reference patcher's filter taps, per method


def is_video(state: dict[str, Tensor], where: str) -> bool:
    """Video (factorized 3D) or image checkpoint, from the first encoder conv."""
    if "encoder.conv_in.0.conv3d.weight" in state:
        return True
    if "encoder.conv_in.weight" in state:
        return False
    raise CheckpointError(f"{where}: no encoder.conv_in weights; not a Cosmos discrete tokenizer checkpoint")


def _get(state: dict[str, Tensor], name: str, where: str) -> Tensor:
    if name not in state:
        raise CheckpointError(f"{where}: missing tensor {name} (needed to read the architecture)")
    return state[name]


def _count(state: dict[str, Tensor], pattern: str) -> int:
    """How many consecutive ``i`` (from 0) have ``pattern.format(i)`` in ``state``."""
    i = 0
    while pattern.format(i) in state:
        i += 1
    return i


def _root(value: float, power: int, what: str, where: str) -> int:
    p = round(value ** (1 / power))
    if p < 1 or p**power != value or p & (p - 1):
        raise CheckpointError(f"{where}: cannot read patch_size from {what}; pass it with --config KWARGS.json")
    return p


def infer_kwargs(state: dict[str, Tensor], video: bool, where: str,
                 given: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """``(kwargs, attention levels)``: the reference kwargs the checkpoint determines, and the encoder levels
    with attention (see :func:`attn_resolutions`). ``given`` (the user's ``--config``) helps read them."""
    conv = "conv3d." if video else ""
    lead = f"encoder.conv_in.0.{conv}weight" if video else "encoder.conv_in.weight"
    conv_in = _get(state, lead, where)
    channels = conv_in.shape[0]
    block = "encoder.down.{}.block.0.conv1" + (".0.conv3d" if video else "") + ".weight"
    levels_n = _count(state, block)
    if levels_n == 0:
        raise CheckpointError(f"{where}: missing tensor {block.format(0)} (needed to read the architecture)")
    mult = [state[block.format(i)].shape[0] / channels for i in range(levels_n)]
    if any(m != int(m) for m in mult):
        raise CheckpointError(f"{where}: level widths {[int(m * channels) for m in mult]} are not multiples of {channels}")
    blocks = _count(state, "encoder.down.0.block.{}.conv1" + (".0.conv3d" if video else "") + ".weight")
    kw: dict[str, Any] = {"channels": channels, "channels_mult": [int(m) for m in mult], "num_res_blocks": blocks}
    kw["embedding_dim"] = _get(state, f"quant_conv.{conv}weight", where).shape[0]
    kw["z_channels"] = _get(state, f"post_quant_conv.{conv}weight", where).shape[0]
    if video:
        kw["z_factor"] = _get(state, f"quant_conv.{conv}weight", where).shape[1] // kw["z_channels"]
    in_channels = given.get("in_channels", 3)
    if "encoder.patcher3d.patch_size_buffer" in state:
        kw["patch_size"] = int(state["encoder.patcher3d.patch_size_buffer"].reshape(-1)[0])
    elif "patch_size" not in given:
        kw["patch_size"] = _root(conv_in.shape[1] / in_channels, 3 if video else 2,
                                 f"{lead}'s {conv_in.shape[1]} input channels", where)
    taps = state.get(f"encoder.{'patcher3d' if video else 'patcher'}.wavelets")
    if taps is not None:
        kw["patch_method"] = next((m for m, v in WAVELETS.items() if math.isclose(float(taps[0]), v, rel_tol=1e-3)),
                                  f"unknown (taps {taps.tolist()})")
    levels = state.get("quantizer._levels", state.get("inv_quant.quantizer._levels"))
    if levels is not None:
        kw["levels"] = [int(v) for v in levels.tolist()]
    attn = "encoder.down.{}.attn.0." + ("0.q.conv3d" if video else "q") + ".weight"
    attn_levels = [i for i in range(levels_n) if attn.format(i) in state]
    if not video:
        downs = sum(f"encoder.down.{i}.downsample.conv.weight" in state for i in range(levels_n))
        kw["spatial_compression"] = given.get("patch_size", kw.get("patch_size", 1)) * 2**downs
    return kw, attn_levels


def variant_kwargs(path: Path) -> dict[str, Any]:
    """Compressions named in the source path (``...Tokenizer-DV4x8x8``), or ``{}``."""
    match = VARIANT.search(str(path))
    if not match:
        return {}
    kind, a, b, c = match.groups()
    if kind == "I":
        return {"spatial_compression": int(a)}
    return {"temporal_compression": int(a), "spatial_compression": int(b)} if c else {}


def attn_resolutions(attn_levels: list[int], kw: dict[str, Any], video: bool) -> list[int]:
    """The ``attn_resolutions`` that put encoder attention exactly at ``attn_levels``."""
    res = kw["resolution"] // kw["patch_size"]
    downs = int(math.log2(kw["spatial_compression"] // kw["patch_size"]))
    sizes = []
    for i in range(len(kw["channels_mult"])):
        sizes.append(res)
        if (i != len(kw["channels_mult"]) - 1) if video else (i < downs):
            res //= 2
    return sorted({sizes[i] for i in attn_levels})


def merge_qkv(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Attention ``X.q``, ``X.k``, ``X.v`` (each ``[conv3d.]weight``/``bias``) -> one ``X.qkv`` tensor."""
    out: dict[str, Tensor] = {}
    for name, t in state.items():
        m = re.fullmatch(r"(.*)\.([qkv])\.((?:conv3d\.)?(?:weight|bias))", name)
        if m is None:
            out[name] = t
            continue
        prefix, suffix = m.group(1), m.group(3)
        parts = [f"{prefix}.{c}.{suffix}" for c in "qkv"]
        missing = [p for p in parts if p not in state]
        if missing:
            raise CheckpointError(f"{where}: missing tensor {missing[0]} (attention needs q, k and v)")
        out[f"{prefix}.qkv.{suffix}"] = torch.cat([state[p] for p in parts])
    return out


def rename(name: str) -> str:
    """A reference tensor name (after :func:`merge_qkv`) -> the port's state-dict key."""
    name = re.sub(r"^quant_conv\.", "encoder.quant_conv.", name)
    name = re.sub(r"^post_quant_conv\.", "decoder.post_quant_conv.", name)
    name = name.replace(".conv3d.", ".").replace(".nin_shortcut.", ".skip.").replace(".proj_out.", ".proj.")
    # video: the spatial half (".0") of an attention pair is a FrameAttention wrapping an AttnBlock2d
    return re.sub(r"(\.attn(?:_1|\.\d+)\.0)\.(norm\.norm|qkv|proj)\.",
                  lambda m: f"{m[1]}.attn.{'norm' if m[2] == 'norm.norm' else m[2]}.", name)


def port_state(state: dict[str, Tensor], target: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Reference tensors with q/k/v merged; attention weights reshaped to the port's (1x1 conv or linear)."""
    merged = merge_qkv(state, where)
    for name, t in merged.items():
        key = rename(name)
        if re.search(r"\.(qkv|proj)\.weight$", key) and key in target and t.numel() == target[key].numel():
            merged[name] = t.reshape(target[key].shape)
    return merged
