"""TokenizerLoss: the terms of each modality, and which weights each adversarial term reaches."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from fsqtok.losses import AudioDiscriminators, PatchGANDiscriminator, TokenizerLoss, TokenizerLossConfig
from fsqtok.losses import build_discriminator, last_decoder_weight


def image_out(x, gen):
    """A stand-in tokenizer output whose reconstruction depends on the generator's weights."""
    y = gen(x)
    return SimpleNamespace(reconstruction=y, quantizer_loss=torch.zeros(()))


def test_adversarial_term_reaches_the_generator_not_the_discriminator():
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(3, 3, 1)
    cfg = TokenizerLossConfig(adversarial_weight=0.5, adaptive_weight=False, disc_channels=8, disc_layers=2)
    crit = TokenizerLoss("image", cfg)
    disc = build_discriminator("image", cfg)
    disc.requires_grad_(False)  # as in the recipe's generator step
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = image_out(x, gen)
    loss, terms = crit.generator_loss(x, out, step=0, disc=disc)
    assert set(terms) == {"reconstruction", "generator"}
    (g_grad,) = torch.autograd.grad(terms["generator"], gen.weight, retain_graph=True)
    assert g_grad.abs().sum() > 0
    torch.testing.assert_close(terms["generator"], 0.5 * -disc(out.reconstruction).mean())
    torch.testing.assert_close(loss, terms["reconstruction"] + terms["generator"])
    _, later = crit.generator_loss(x, out, step=0, disc=None)
    assert "generator" not in later


def test_adversarial_start_and_adaptive_weight():
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(3, 3, 1)
    cfg = TokenizerLossConfig(adversarial_weight=1.0, adversarial_start=5, disc_channels=8, disc_layers=2)
    crit = TokenizerLoss("image", cfg)
    disc = build_discriminator("image", cfg)
    x = torch.rand(2, 3, 16, 16)
    assert not crit.adversarial_on(4) and crit.adversarial_on(5)
    assert "generator" not in crit.generator_loss(x, image_out(x, gen), 4, disc, gen.weight)[1]
    out = image_out(x, gen)
    _, terms = crit.generator_loss(x, out, 5, disc, gen.weight)
    from fsqtok.losses import adaptive_weight, hinge_g_loss
    w = adaptive_weight(terms["reconstruction"], hinge_g_loss(disc(out.reconstruction)), gen.weight)
    torch.testing.assert_close(terms["generator"], w * hinge_g_loss(disc(out.reconstruction)))


def test_discriminator_loss_trains_only_the_discriminator():
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(3, 3, 1)
    cfg = TokenizerLossConfig(adversarial_weight=1.0, disc_channels=8, disc_layers=2)
    crit = TokenizerLoss("image", cfg)
    disc = build_discriminator("image", cfg)
    x = torch.rand(2, 3, 16, 16)
    d_loss = crit.discriminator_loss(x, image_out(x, gen), disc)
    d_loss.backward()
    assert gen.weight.grad is None
    assert all(p.grad is not None for p in disc.parameters())


def test_build_discriminator_per_modality():
    cfg = TokenizerLossConfig(adversarial_weight=1.0, disc_channels=4, disc_layers=1)
    assert build_discriminator("image", TokenizerLossConfig()) is None
    assert isinstance(build_discriminator("audio", cfg), AudioDiscriminators)
    assert build_discriminator("depth", cfg).main[0].in_channels == 1
    assert build_discriminator("video", cfg).main[0].in_channels == 3
    grey = build_discriminator("image", cfg, in_channels=1)
    assert isinstance(grey, PatchGANDiscriminator) and grey.main[0].in_channels == 1


def test_audio_terms_and_feature_matching():
    torch.manual_seed(0)
    cfg = TokenizerLossConfig(adversarial_weight=1.0, disc_channels=4)
    crit = TokenizerLoss("audio", cfg, sample_rate=16000)
    disc = build_discriminator("audio", cfg)
    x = torch.rand(2, 1, 4000) * 2 - 1
    y = (x * 0.5).requires_grad_()
    loss, terms = crit.generator_loss(x, SimpleNamespace(reconstruction=y, quantizer_loss=torch.zeros(())), 0, disc)
    assert set(terms) == {"waveform_l1", "mel", "stft", "feature_matching", "generator"}
    torch.testing.assert_close(terms["waveform_l1"], (y - x).abs().mean())
    loss.backward()
    assert y.grad.abs().sum() > 0


def test_unknown_modality_is_an_error():
    with pytest.raises(ValueError, match="modality"):
        TokenizerLoss("text", TokenizerLossConfig())


def test_last_decoder_weight_is_the_output_layer():
    class Tok(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Conv2d(8, 3, 3))

    tok = Tok()
    assert last_decoder_weight(tok) is tok.decoder[2].weight
