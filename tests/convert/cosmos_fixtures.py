"""Helpers shared by the Cosmos conversion tests: the committed fixtures (see tests/fixtures/cosmos/README.md)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cosmos"
NAMES = ("image_haar1_attn", "image_haar2", "video_haar1_attn", "video_haar2")


def kwargs(name: str) -> dict:
    return json.loads((FIXTURES / name / "kwargs.json").read_text())


def io(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / name / "io.safetensors"))


def copy_fixture(name: str, dest: Path) -> Path:
    """A copy of the fixture's reference weights in ``dest`` (a folder holding model.safetensors)."""
    dest.mkdir(parents=True)
    shutil.copy(FIXTURES / name / "model.safetensors", dest / "model.safetensors")
    return dest


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0


def _holder(tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A module whose state dict is ``tensors``, under their dotted names."""
    root = _Holder()
    for name, t in tensors.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, t)
    return root


def write_jit(name: str, dest: Path) -> Path:
    """``encoder.jit`` + ``decoder.jit`` in ``dest`` laid out as the released files are: the reference's
    tensor names split as its ``encoder_jit()``/``decoder_jit()`` split them, plus the FSQ levels buffer
    (and the video patch size) that TorchScript keeps. The scripts' code is a stub; the converter only
    reads their tensors."""
    state = load_file(str(FIXTURES / name / "model.safetensors"))
    levels = torch.tensor(kwargs(name)["levels"], dtype=torch.int32)
    enc = {k: v for k, v in state.items() if k.startswith(("encoder.", "quant_conv."))}
    dec = {k: v for k, v in state.items() if k.startswith(("decoder.", "post_quant_conv."))}
    enc["quantizer._levels"] = levels
    dec["inv_quant.quantizer._levels"] = levels
    if name.startswith("video"):
        enc["encoder.patcher3d.patch_size_buffer"] = torch.tensor([kwargs(name)["patch_size"]], dtype=torch.int32)
    dest.mkdir(parents=True)
    save_jit(enc, dest / "encoder.jit")
    save_jit(dec, dest / "decoder.jit")
    return dest


def save_jit(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A TorchScript file whose state dict is ``tensors`` (its code a stub)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        torch.jit.trace(_holder(tensors), torch.zeros(1)).save(str(path))
