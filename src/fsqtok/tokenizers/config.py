"""The records every tokenizer shares: the config base (bottleneck fields and one-line validation),
the forward output, and the chunking helper of the streaming encoders.

Split from :mod:`fsqtok.tokenizers.base` so that the encode/decode template there stays short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ..configs import ModelConfig
from ..quantizers import QuantizerOutput
from ..quantizers.fsq import validate_levels


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TokenizerConfig(ModelConfig):
    """Bottleneck fields shared by every modality's config. Subclasses add their network fields;
    validation helpers and (de)serialization come from :class:`fsqtok.configs.ModelConfig`."""

    quantizer: str = "fsq"  # "fsq", "rfsq" (residual FSQ) or "vq" (VQ-VAE baseline: prod(levels) codes of dim len(levels))
    levels: tuple[int, ...] = (8, 5, 5, 5)  # FSQ levels per channel; codebook = prod(levels)
    num_stages: int = 1  # residual stages; must be 1 for "fsq"
    quantize_dropout: bool = False  # "rfsq": train on a random prefix of stages (bitrate chosen at decode)
    latent_channels: int | None = None  # encoder output width; None = len(levels) (no projection)
    # "rfsq": scale of stage i. "grid": r^-i with r the largest ratio the grid covers (L, or L-1 for even L),
    # so every level list converges; "levels": L^-i, for tokenizers saved before fsqtok 0.1.1 (see ResidualFSQ)
    residual_stage_scale: str = "grid"
    # "vq": EMA usage below which a code is re-seeded from the batch (dead-code restarts; 0 = off)
    vq_dead_code_threshold: float = 0.0

    def __post_init__(self) -> None:
        self._check_choice("quantizer", ("fsq", "rfsq", "vq"))
        self._check_choice("residual_stage_scale", ("grid", "levels"))
        self._check_float("vq_dead_code_threshold", lo=0.0)
        if self.quantizer != "vq" and self.vq_dead_code_threshold > 0:
            self._fail("vq_dead_code_threshold", "needs quantizer='vq'")
        levels = self._check_ints("levels", minimum=2)
        try:  # for VQ the levels only size the codebook (prod codes of dim len): no FSQ grid to check
            if self.quantizer != "vq":
                validate_levels(levels, eps=1e-3, symmetric=False)
        except (TypeError, ValueError) as e:
            self._fail("levels", str(e).removeprefix("FSQ: "))
        self._check_int("num_stages", minimum=1)
        self._check_bool("quantize_dropout")
        if self.quantizer != "rfsq" and self.num_stages != 1:
            self._fail("num_stages", f"must be 1 for quantizer={self.quantizer!r}, got {self.num_stages} (use quantizer='rfsq')")
        if self.quantizer != "rfsq" and self.quantize_dropout:
            self._fail("quantize_dropout", "needs quantizer='rfsq'")
        if self.latent_channels is not None:
            self._check_int("latent_channels", minimum=1)


# --------------------------------------------------------------------------- outputs


@dataclass
class TokenizerOutput:
    """What ``Tokenizer.forward`` returns.

    Attributes:
        reconstruction: decoded input, in the input's convention and shape.
        quantizer_loss: scalar auxiliary loss of the bottleneck (0 for FSQ).
        quantizer_output: the bottleneck's raw output (``z_q``, per-call usage statistics).
        unfold: bottleneck indices -> the layout :meth:`Tokenizer.encode` returns.

    :attr:`indices` is read on demand from ``quantizer_output``, so a training step never waits
    for it, and reading it raises the quantizer's error when the latents were not finite.
    """

    reconstruction: Tensor
    quantizer_loss: Tensor
    quantizer_output: QuantizerOutput
    unfold: Callable[[Tensor], Tensor] = lambda indices: indices

    @property
    def indices(self) -> Tensor:
        """int64 tokens, as :meth:`Tokenizer.encode` returns them."""
        return self.unfold(self.quantizer_output.indices)

    def usage(self) -> float:
        """Fraction of the codebook used in this batch (computed on demand)."""
        return self.quantizer_output.usage()

    def perplexity(self) -> float:
        """Perplexity of this batch's codes (computed on demand)."""
        return self.quantizer_output.perplexity()


# --------------------------------------------------------------------------- streaming helper


def chunk_sizes(total: int, first: int, rest: int) -> list[int]:
    """Split ``total`` steps into a first chunk of ``first`` and then chunks of ``rest`` (last may be short)."""
    sizes, done, size = [], 0, first
    while done < total:
        sizes.append(min(size, total - done))
        done += sizes[-1]
        size = rest
    return sizes
