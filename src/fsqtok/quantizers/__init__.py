"""The shared bottleneck: FSQ, residual FSQ, the VQ baseline and VQ with codebook splitting (UViM's)."""

from .base import NonFiniteLatentError, QuantizerOutput, ResidualQuantizerOutput
from .fsq import FSQ
from .grouped_fsq import GroupedFSQ
from .residual_fsq import ResidualFSQ
from .stats import CodebookUsage, bits_per_token, code_counts
from .vq import VectorQuantizer
from .vq_split import SplittingVectorQuantizer

__all__ = [
    "FSQ",
    "GroupedFSQ",
    "ResidualFSQ",
    "VectorQuantizer",
    "SplittingVectorQuantizer",
    "NonFiniteLatentError",
    "QuantizerOutput",
    "ResidualQuantizerOutput",
    "CodebookUsage",
    "bits_per_token",
    "code_counts",
]
