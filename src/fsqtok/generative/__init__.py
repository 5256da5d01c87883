"""Generative models on fsqtok tokens: MaskGIT (:mod:`fsqtok.generative.maskgit`) and the shared transformer."""

from .config import ModelConfig, ModelConfigError
from .maskgit import MaskGIT, MaskGITConfig, gamma, mask_count, random_mask
from .transformer import Block, Transformer

__all__ = ["Block", "MaskGIT", "MaskGITConfig", "ModelConfig", "ModelConfigError", "Transformer", "gamma",
           "mask_count", "random_mask"]
