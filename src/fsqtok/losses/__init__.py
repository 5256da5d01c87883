"""Training losses: reconstruction, spectral (audio), adversarial, the optional perceptual loss, and
the whole tokenizer loss built from them (:class:`TokenizerLoss`)."""

from .adversarial import (
    MultiPeriodDiscriminator,
    MultiScaleSTFTDiscriminator,
    PatchGANDiscriminator,
    adaptive_weight,
    adopt_weight,
    feature_matching_loss,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
)
from .perceptual import PerceptualLoss, maybe_perceptual_loss
from .reconstruction import ReconstructionLoss
from .spectral import MultiResolutionSTFTLoss, MultiScaleMelLoss
from .tokenizer import AudioDiscriminators, TokenizerLoss, TokenizerLossConfig, build_discriminator, last_decoder_weight

__all__ = [
    "ReconstructionLoss",
    "MultiScaleMelLoss",
    "MultiResolutionSTFTLoss",
    "PatchGANDiscriminator",
    "hinge_d_loss",
    "hinge_g_loss",
    "adaptive_weight",
    "adopt_weight",
    "MultiPeriodDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "feature_matching_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "PerceptualLoss",
    "maybe_perceptual_loss",
    "TokenizerLoss",
    "TokenizerLossConfig",
    "AudioDiscriminators",
    "build_discriminator",
    "last_decoder_weight",
]
