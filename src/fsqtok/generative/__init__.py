"""Generative models on fsqtok tokens: MaskGIT (:mod:`fsqtok.generative.maskgit.model`), UViM
(:mod:`fsqtok.generative.uvim.stage1`: stage I oracle + base model, :mod:`~fsqtok.generative.uvim.lm`: the
stage II code LM) and the shared transformer and config base."""

from ..configs import ModelConfig
from .maskgit import MaskGIT, MaskGITConfig, gamma, mask_count, random_mask
from .transformer import Block, Transformer
from .uvim import UViMConfig, UViMStage1
from .uvim.lm import UViMLM, UViMLMConfig, UViMPipeline

__all__ = ["Block", "MaskGIT", "MaskGITConfig", "ModelConfig", "Transformer", "UViMConfig", "UViMLM",
           "UViMLMConfig", "UViMPipeline", "UViMStage1", "gamma", "mask_count", "random_mask"]
