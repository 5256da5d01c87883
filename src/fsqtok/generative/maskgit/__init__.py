"""MaskGIT on fsqtok tokens: :mod:`~fsqtok.generative.maskgit.model` (the bidirectional transformer,
mask schedule, iterative decoding) and :mod:`~fsqtok.generative.maskgit.sampling` (the matching tokenizer,
decoding, labelled grids)."""

from .model import MaskGIT, MaskGITConfig, gamma, mask_count, random_mask

__all__ = ["MaskGIT", "MaskGITConfig", "gamma", "mask_count", "random_mask"]
