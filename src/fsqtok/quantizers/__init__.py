"""The shared bottleneck: FSQ, residual FSQ and the VQ baseline."""

from .base import NonFiniteLatentError, QuantizerOutput, ResidualQuantizerOutput
from .fsq import FSQ
from .grouped_fsq import GroupedFSQ
from .residual_fsq import ResidualFSQ
from .stats import CodebookUsage, bits_per_token, code_counts
from .vq import VectorQuantizer

__all__ = [
    "FSQ",
    "GroupedFSQ",
    "ResidualFSQ",
    "VectorQuantizer",
    "NonFiniteLatentError",
    "QuantizerOutput",
    "ResidualQuantizerOutput",
    "CodebookUsage",
    "bits_per_token",
    "code_counts",
]
