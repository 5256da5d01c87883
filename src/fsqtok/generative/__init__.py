"""Generative models on fsqtok tokens: MaskGIT (:mod:`fsqtok.generative.maskgit`) and the shared transformer."""

from .config import ModelConfig
from .maskgit import MaskGIT, MaskGITConfig, gamma, mask_count, random_mask
from .transformer import Block, Transformer

__all__ = ["Block", "MaskGIT", "MaskGITConfig", "ModelConfig", "Transformer", "gamma",
           "mask_count", "random_mask"]
