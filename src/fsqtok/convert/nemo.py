"""``fsqtok convert nemo``: NVIDIA NeMo FSQ audio codecs (``.nemo``) -> :class:`NemoAudioTokenizer`.

A ``.nemo`` file is a tar holding ``model_config.yaml`` and ``model_weights.ckpt``. Both are read
without running code from the file: the YAML with ``yaml.safe_load``, the weights with
``torch.load(weights_only=True)``, and only these two members are copied out of the tar, under
names chosen here, so no member path can reach outside the scratch folder.

The architecture comes from the config (NeMo's constructor defaults fill what it leaves out) and is
checked against the tensors' shapes by the strict load. NeMo's weight norm (``g``, ``v``) is folded
into plain conv weights with the product NeMo computes at every forward. Discriminator and loss
tensors are skipped and listed; the FSQ level buffers are checked against the config.
"""

from __future__ import annotations

import math
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ..hub import CheckpointError
from ..tokenizers.nemo_audio import NemoAudioConfig, NemoAudioTokenizer
from .core import Converted, load_strict, sha256_file, torch_load_safe

CONFIG_MEMBER, WEIGHTS_MEMBER = "model_config.yaml", "model_weights.ckpt"
MODULES = "nemo.collections.tts.modules.audio_codec_modules."
LICENSE = ("NVIDIA Open Model License", "the licence NVIDIA releases its NeMo codecs under "
           "(https://developer.download.nvidia.com/licenses/nvidia-open-model-license-agreement-june-2024.pdf); "
           "the .nemo file names none, so check the source's model card")
SKIP = {  # source tensors left out on purpose (regular expressions, matched in full) -> why
    r"discriminator\..*": "discriminator (training only)",
    r"\w+_loss_fn\..*": "loss module (training only)",
    r"(speaker_encoder|slm_predictor)\..*": "training-only auxiliary network",
    r"vector_quantizer\.(fsqs\.\d+\.)?(dim_base_index|num_levels)": "FSQ constants (checked against the config)",
}
# (NeMo constructor keyword, NemoAudioConfig field suffix, NeMo's default); None: required
ENCODER_KEYS = {"down_sample_rates": ("rates", (2, 2, 8, 8)), "encoded_dim": (None, None),
                "base_channels": ("channels", 32), "in_kernel_size": ("in_kernel", 7),
                "out_kernel_size": ("out_kernel", 7), "resblock_kernel_sizes": ("kernels", (3, 7, 11)),
                "resblock_dilation_sizes": ("dilations", (1, 3, 5)), "activation": ("activation", "lrelu"),
                "pad_mode": (None, "reflect")}
DECODER_KEYS = {"up_sample_rates": ("rates", (8, 8, 2, 2)), "input_dim": (None, None),
                "base_channels": ("channels", 512), "in_kernel_size": ("in_kernel", 7),
                "out_kernel_size": ("out_kernel", 3), "resblock_kernel_sizes": ("kernels", (3, 7, 11)),
                "resblock_dilation_sizes": ("dilations", (1, 3, 5)), "activation": ("activation", "lrelu"),
                "output_activation": ("output", "tanh"), "pad_mode": (None, "reflect"),
                "n_groups_equal_to_out_channels": ("grouped_up", False)}
RENAMES = [  # NeMo state-dict names (weight norm folded) -> NemoAudioTokenizer's, applied in order
    (r"^audio_encoder\.", "encoder."), (r"^audio_decoder\.", "decoder."),
    (r"\.res_layers\.(\d+)\.res_blocks\.(\d+)\.res_blocks\.(\d+)\.", r".stages.\1.res.branches.\2.\3."),
    (r"\.activations\.(\d+)\.", r".stages.\1.act."),
    (r"\.(down|up)_sample_conv_layers\.(\d+)\.conv\.", r".stages.\2.\1."),
    (r"\.pre_conv\.conv\.", ".stem."), (r"\.post_conv\.conv\.", ".out_conv."), (r"\.post_activation\.", ".out_act."),
    (r"\.input_activation\.", ".act1."), (r"\.input_conv\.conv\.", ".conv1."),
    (r"\.skip_activation\.", ".act2."), (r"\.skip_conv\.conv\.", ".conv2."),
    (r"\.activation\.snake_act\.alpha$", ".snake.alpha"), (r"\.activation\.alpha$", ".alpha"),
]


def convert_nemo(path: Path) -> Converted:
    """Convert a ``.nemo`` file (or a folder holding exactly one) to a :class:`NemoAudioTokenizer`."""
    nemo = _nemo_file(Path(path))
    with tempfile.TemporaryDirectory(prefix="fsqtok-nemo-") as scratch:
        config_file, weights_file = _extract(nemo, Path(scratch))
        raw = _read_yaml(config_file, nemo)
        config = nemo_config(raw, f"{nemo}:{CONFIG_MEMBER}")
        try:
            state = torch_load_safe(weights_file)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(str(weights_file), f"{nemo}:{WEIGHTS_MEMBER}")) from None
    where = f"{nemo}:{WEIGHTS_MEMBER}"
    model, skipped = tokenizer_from_state(config, _state_dict(state, where), where)
    return Converted(model=model, source=str(path), license_name=LICENSE[0], license_text=LICENSE[1],
                     source_files={nemo.name: sha256_file(nemo)}, skipped=skipped)


def tokenizer_from_state(config: NemoAudioConfig, state: dict[str, Tensor], where: str
                         ) -> tuple[NemoAudioTokenizer, dict[str, str]]:
    """A :class:`NemoAudioTokenizer` (eval mode) holding a NeMo ``AudioCodecModel`` state dict, and the
    ``{skipped tensor: reason}`` list. ``where`` names the weights in errors."""
    networks = {k: v for k, v in state.items() if k.startswith(("audio_encoder.", "audio_decoder."))}
    tensors = {**{k: v for k, v in state.items() if k not in networks}, **fold_weight_norm(networks, where)}
    _check_fsq_buffers(tensors, config, where)
    model = NemoAudioTokenizer(config)
    skipped = load_strict(model, tensors, rename, where, SKIP)
    return model.eval(), skipped


def rename(name: str) -> str:
    """NeMo state-dict name (weight norm folded) -> :class:`NemoAudioTokenizer` state-dict key."""
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def _nemo_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.nemo"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected one .nemo file in the folder, found {len(found)}"
                                    + (f" ({', '.join(p.name for p in found)}); pass the file itself" if found else ""))
        return found[0]
    if not tarfile.is_tarfile(path):
        raise CheckpointError(f"{path}: not a .nemo file (a tar holding {CONFIG_MEMBER} and {WEIGHTS_MEMBER})")
    return path


def _extract(nemo: Path, scratch: Path) -> tuple[Path, Path]:
    """Copy the config and weights members of ``nemo`` into ``scratch`` under fixed names (nothing else)."""
    wanted = {CONFIG_MEMBER: scratch / "config.yaml", WEIGHTS_MEMBER: scratch / "weights.ckpt"}
    found: set[str] = set()
    try:
        with tarfile.open(nemo, "r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in wanted and member.isfile():
                    if name in found:
                        raise CheckpointError(f"{nemo}: holds {name} twice")
                    found.add(name)
                    with tar.extractfile(member) as src, open(wanted[name], "wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst, 1 << 20)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CheckpointError(f"{nemo}: unreadable .nemo tar ({e})") from None
    missing = sorted(set(wanted) - found)
    if missing:
        raise CheckpointError(f"{nemo}: no {' or '.join(missing)} at the top of the tar; is it a NeMo model file?")
    return wanted[CONFIG_MEMBER], wanted[WEIGHTS_MEMBER]


def _read_yaml(path: Path, nemo: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{nemo}:{CONFIG_MEMBER}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{nemo}:{CONFIG_MEMBER}: expected a mapping of model settings")
    return raw


def _section(raw: dict[str, Any], key: str, targets: tuple[str, ...], where: str) -> dict[str, Any]:
    section = raw.get(key)
    if not isinstance(section, dict):
        raise CheckpointError(f"{where}: no {key} section; not a NeMo AudioCodecModel")
    target = str(section.get("_target_", ""))
    if target.removeprefix(MODULES) not in targets:
        raise CheckpointError(f"{where}: {key} is {target or 'unnamed'}; fsqtok converts {' / '.join(targets)} only")
    return {k: v for k, v in section.items() if k != "_target_"}


def _network(section: dict[str, Any], keys: dict[str, tuple[str | None, Any]], side: str, where: str) -> dict[str, Any]:
    """NeMo encoder/decoder kwargs -> ``{side}_*`` config fields (NeMo's defaults fill gaps)."""
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise CheckpointError(f"{where}: audio_{side} has setting(s) fsqtok does not port: {', '.join(unknown)}")
    fields = {}
    for key, (suffix, default) in keys.items():
        value = section.get(key, default)
        if value is None:
            raise CheckpointError(f"{where}: audio_{side}.{key} is missing")
        if isinstance(value, str) and "${" in value:
            raise CheckpointError(f"{where}: audio_{side}.{key} is an unresolved interpolation {value!r}")
        if suffix is not None:
            fields[f"{side}_{suffix}"] = tuple(value) if isinstance(value, list) else value
    return fields


def nemo_config(raw: dict[str, Any], where: str) -> NemoAudioConfig:
    """A NeMo ``AudioCodecModel`` config (parsed YAML) -> :class:`NemoAudioConfig`, checked for consistency."""
    if raw.get("semantic_codec") or raw.get("semantic_codec_path"):
        raise CheckpointError(f"{where}: codecs with a semantic codec are not supported")
    encoder = _section(raw, "audio_encoder", ("HiFiGANEncoder",), where)
    decoder = _section(raw, "audio_decoder", ("HiFiGANDecoder",), where)
    quantizer = _section(raw, "vector_quantizer", ("GroupFiniteScalarQuantizer", "FiniteScalarQuantizer"), where)
    grouped = "num_groups" in quantizer
    levels = quantizer.get("num_levels_per_group" if grouped else "num_levels")
    groups = quantizer.get("num_groups", 1)
    pads = {encoder.get("pad_mode", "reflect"), decoder.get("pad_mode", "reflect")}
    if len(pads) != 1:
        raise CheckpointError(f"{where}: encoder and decoder pad modes differ ({sorted(pads)}); not supported")
    dims = {"audio_encoder.encoded_dim": encoder.get("encoded_dim"), "audio_decoder.input_dim": decoder.get("input_dim")}
    fields = {**_network(encoder, ENCODER_KEYS, "encoder", where), **_network(decoder, DECODER_KEYS, "decoder", where)}
    if not isinstance(levels, list) or any(d != groups * len(levels) for d in dims.values()):
        raise CheckpointError(f"{where}: quantizer levels {levels} x {groups} group(s) do not match {dims}")
    hop = raw.get("samples_per_frame")
    if hop is not None and hop != math.prod(fields["encoder_rates"]):
        raise CheckpointError(f"{where}: samples_per_frame {hop} is not the product of the encoder's rates")
    try:
        return NemoAudioConfig(levels=tuple(levels), num_groups=groups, fsq_variant="printed",
                               fsq_eps=quantizer.get("eps", 1e-3), sample_rate=raw.get("sample_rate"),
                               pad_mode=pads.pop(), **fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def _state_dict(state: object, where: str) -> dict[str, Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise CheckpointError(f"{where}: expected a state dict of tensors")
    return state


def fold_weight_norm(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Replace each weight-norm pair (``parametrizations.weight.original0/1`` or ``weight_g/_v``) by
    ``<module>.weight = g v / ||v||``, computed as NeMo computes it (``torch._weight_norm``, dim 0)."""
    pairs = {r"\.parametrizations\.weight\.original0$": r".parametrizations.weight.original1",
             r"\.weight_g$": r".weight_v"}
    out = dict(state)
    for name in state:
        for g_suffix, v_suffix in pairs.items():
            if not re.search(g_suffix, name):
                continue
            v_name = re.sub(g_suffix, v_suffix, name)
            if v_name not in state:
                raise CheckpointError(f"{where}: weight-norm tensor {name} has no {v_name}")
            weight = re.sub(g_suffix, ".weight", name)
            out[weight] = torch._weight_norm(state[v_name].float(), state[name].float(), 0)
            del out[name], out[v_name]
    leftover = sorted(n for n in out if n.endswith((".original1", ".weight_v")))
    if leftover:
        raise CheckpointError(f"{where}: weight-norm tensor(s) without their gain: {', '.join(leftover[:5])}")
    return out


def _check_fsq_buffers(state: dict[str, Tensor], config: NemoAudioConfig, where: str) -> None:
    """NeMo stores each FSQ's levels and place values; they must be the config's."""
    levels = torch.tensor(config.levels)
    basis = torch.tensor([math.prod(config.levels[:i]) for i in range(len(config.levels))])
    for name, tensor in state.items():
        if re.fullmatch(r"vector_quantizer\.(fsqs\.\d+\.)?num_levels", name):
            expected = levels
        elif re.fullmatch(r"vector_quantizer\.(fsqs\.\d+\.)?dim_base_index", name):
            expected = basis
        else:
            continue
        if not torch.equal(tensor.flatten().long(), expected):
            raise CheckpointError(f"{where}: {name} is {tensor.flatten().tolist()}, the config gives {expected.tolist()}")
