"""The training loss of a tokenizer, every modality: reconstruction, spectral, quantizer and adversarial terms.

    criterion = TokenizerLoss("image", TokenizerLossConfig(adversarial_weight=0.1))
    disc = build_discriminator("image", criterion.config)              # None when adversarial_weight == 0
    loss, terms = criterion.generator_loss(x, out, step, disc, last_decoder_weight(tokenizer))
    d_loss = criterion.discriminator_loss(x, out, disc)                # when criterion.adversarial_on(step)

What the discriminator sees: images ``(B, C, H, W)``; video frames folded into the batch
``(B*T, 3, H, W)``; depth normalized to the tokenizer's target range ``(B, 1, H, W)``; audio
waveforms ``(B, 1, N)`` (multi-period + multi-scale STFT discriminators, with feature matching).
"""

from __future__ import annotations

import dataclasses
import torch
from torch import Tensor, nn

from .adversarial import (MultiPeriodDiscriminator, MultiScaleSTFTDiscriminator, PatchGANDiscriminator,
                          adaptive_weight, feature_matching_loss, hinge_d_loss, hinge_g_loss)
from .perceptual import maybe_perceptual_loss
from .reconstruction import ReconstructionLoss
from .spectral import MultiResolutionSTFTLoss, MultiScaleMelLoss

MODALITIES = ("image", "depth", "audio", "video")


@dataclasses.dataclass
class TokenizerLossConfig:
    """Loss weights and discriminator settings (the recipe's ``loss`` section)."""

    reconstruction: str = "l1"  # image, depth, video: l1 | l2
    reconstruction_weight: float = 1.0  # audio: waveform L1 weight
    quantizer_weight: float = 1.0  # the bottleneck's own loss (VQ commitment/codebook; 0 for FSQ)
    perceptual_weight: float = 0.0  # image, video: LPIPS-style, only when weights are available locally
    mel_weight: float = 1.0  # audio: multi-scale mel loss
    stft_weight: float = 1.0  # audio: multi-resolution STFT loss
    adversarial_weight: float = 0.0  # 0 disables the discriminator
    adversarial_start: int = 0  # step at which the adversarial loss switches on
    adaptive_weight: bool = True  # image, depth, video: VQGAN adaptive weight of the generator loss
    feature_matching_weight: float = 2.0  # audio: discriminator feature matching
    disc_lr: float = 1e-4
    disc_channels: int = 64  # PatchGAN ndf; audio: MPD widths (c/2, 2c, 8c, 16c, 16c), MS-STFT filters c/2
    disc_layers: int = 3  # PatchGAN downsampling layers (input side >= 2 ** (layers + 2))


class AudioDiscriminators(nn.Module):
    """DAC/EnCodec style: multi-period + multi-scale STFT discriminators as one module (one DDP wrapper).

    ``forward((B, 1, N))`` returns ``(logits, features)``: one logits tensor per sub-discriminator,
    and the intermediate feature maps for feature matching.
    """

    def __init__(self, c: int = 64) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(channels=(max(1, c // 2), 2 * c, 8 * c, 16 * c, 16 * c))
        self.mss = MultiScaleSTFTDiscriminator(filters=max(1, c // 2))

    def forward(self, x: Tensor) -> tuple[list[Tensor], list]:
        logits, feats = [], []
        for d in (self.mpd, self.mss):
            lg, ft = d(x)
            logits += list(lg)
            feats += list(ft)
        return logits, feats


def build_discriminator(modality: str, config: TokenizerLossConfig, in_channels: int = 3) -> nn.Module | None:
    """The discriminator of ``modality`` (``in_channels``: image/video channels), or ``None`` when
    ``adversarial_weight`` is 0."""
    if config.adversarial_weight <= 0:
        return None
    if modality == "audio":
        return AudioDiscriminators(config.disc_channels)
    channels = 1 if modality == "depth" else in_channels
    return PatchGANDiscriminator(in_channels=channels, ndf=config.disc_channels, n_layers=config.disc_layers)


def last_decoder_weight(tokenizer: nn.Module) -> Tensor:
    """The decoder's output layer weight, for the VQGAN adaptive weight."""
    return [p for n, p in tokenizer.decoder.named_parameters() if n.endswith("weight") and p.ndim > 1][-1]


def _frames(v: Tensor) -> Tensor:
    """Video ``(B, C, T, H, W)`` -> frames ``(B*T, C, H, W)``."""
    return v.transpose(1, 2).flatten(0, 1)


class TokenizerLoss(nn.Module):
    """All loss terms of one modality; every term is returned on its own for logging.

    Args:
        modality: image | depth | audio | video.
        config: weights and discriminator settings.
        sample_rate: audio sample rate (for the mel loss).
    """

    def __init__(self, modality: str, config: TokenizerLossConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        self.modality, self.config = modality, config
        c = config
        if modality == "audio":
            self.mel = MultiScaleMelLoss(sample_rate=sample_rate) if c.mel_weight > 0 else None
            self.stft = MultiResolutionSTFTLoss() if c.stft_weight > 0 else None
        else:
            self.recon = ReconstructionLoss(c.reconstruction)
            wants_perceptual = c.perceptual_weight > 0 and modality != "depth"
            self.perceptual = maybe_perceptual_loss() if wants_perceptual else None

    def adversarial_on(self, step: int) -> bool:
        """Whether the adversarial terms count at optimizer step ``step`` (0-based)."""
        return self.config.adversarial_weight > 0 and step >= self.config.adversarial_start

    def _d_inputs(self, x: Tensor, out) -> tuple[Tensor, Tensor]:
        """(real, fake) as the discriminator sees them."""
        if self.modality == "depth":
            return out.target, out.reconstruction_normalized
        if self.modality == "video":
            return _frames(x), _frames(out.reconstruction)
        return x, out.reconstruction

    def _logits(self, disc: nn.Module, x: Tensor) -> tuple[list[Tensor], list]:
        """(logits, features) of every sub-discriminator."""
        return disc(x) if self.modality == "audio" else ([disc(x)], [])

    def _reconstruction_terms(self, x: Tensor, out) -> dict[str, Tensor]:
        c, terms = self.config, {}
        if self.modality == "audio":
            terms["waveform_l1"] = c.reconstruction_weight * (out.reconstruction - x).abs().mean()
            if self.mel is not None:
                terms["mel"] = c.mel_weight * self.mel(out.reconstruction, x)
            if self.stft is not None:
                terms["stft"] = c.stft_weight * self.stft(out.reconstruction, x)
        elif self.modality == "depth":
            terms["reconstruction"] = c.reconstruction_weight * self.recon(
                out.reconstruction_normalized, out.target, mask=out.valid_mask)
        else:
            terms["reconstruction"] = c.reconstruction_weight * self.recon(out.reconstruction, x)
            if self.perceptual is not None:
                y, t = (_frames(out.reconstruction), _frames(x)) if self.modality == "video" else (out.reconstruction, x)
                if y.shape[1] == 1:  # greyscale: the perceptual network expects RGB
                    y, t = y.expand(-1, 3, -1, -1), t.expand(-1, 3, -1, -1)
                terms["perceptual"] = c.perceptual_weight * self.perceptual(y, t).mean()
        return terms

    def generator_loss(self, x: Tensor, out, step: int, disc: nn.Module | None = None,
                       last_layer: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The tokenizer's loss and its terms.

        Args:
            x: the input batch; ``out``: the tokenizer's output for it.
            step: the optimizer step (0-based), for ``adversarial_start``.
            disc: the discriminator (its weights must not require grad during this step), or ``None``.
            last_layer: the decoder's last weight, for the adaptive weight (image, depth, video).
        """
        c = self.config
        terms = self._reconstruction_terms(x, out)
        if c.quantizer_weight > 0 and out.quantizer_loss.requires_grad:
            terms["quantizer"] = c.quantizer_weight * out.quantizer_loss
        if disc is not None and self.adversarial_on(step):
            real, fake = self._d_inputs(x, out)
            fake_logits, fake_feats = self._logits(disc, fake)
            g = sum(hinge_g_loss(lg) for lg in fake_logits) / len(fake_logits)
            if self.modality == "audio":
                with torch.no_grad():
                    _, real_feats = self._logits(disc, real)
                terms["feature_matching"] = c.feature_matching_weight * feature_matching_loss(real_feats, fake_feats)
                terms["generator"] = c.adversarial_weight * g
            else:
                w = 1.0
                if c.adaptive_weight and last_layer is not None and torch.is_grad_enabled():
                    nll = sum(v for k, v in terms.items() if k in ("reconstruction", "perceptual"))
                    w = adaptive_weight(nll, g, last_layer)
                terms["generator"] = c.adversarial_weight * w * g
        return sum(terms.values()), terms

    def discriminator_loss(self, x: Tensor, out, disc: nn.Module) -> Tensor:
        """Hinge loss of ``disc`` on real ``x`` against the detached reconstruction (one forward, DDP-friendly)."""
        real, fake = self._d_inputs(x, out)
        n = real.shape[0]
        logits, _ = self._logits(disc, torch.cat([real.detach(), fake.detach()]))
        return sum(hinge_d_loss(lg[:n], lg[n:]) for lg in logits) / len(logits)
