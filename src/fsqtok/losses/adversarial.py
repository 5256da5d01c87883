"""Adversarial training pieces.

Images/depth/video (VQGAN): :class:`PatchGANDiscriminator` (pix2pix/taming ``NLayerDiscriminator``),
hinge losses, :func:`adaptive_weight`, :func:`adopt_weight`. For video, fold time into the
batch at the call site: ``v.transpose(1, 2).flatten(0, 1)``.

Audio (HiFi-GAN / EnCodec / DAC): :class:`MultiPeriodDiscriminator`,
:class:`MultiScaleSTFTDiscriminator`, each ``forward(x (B, 1, T)) -> (logits list, feature-map
lists)``, :func:`feature_matching_loss` and the LS-GAN losses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
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
]


# ----------------------------------------------------------------------------- image (VQGAN)


def _norm2d(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(32, ch), ch)
    if kind in ("none", None):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class PatchGANDiscriminator(nn.Module):
    """PatchGAN (``NLayerDiscriminator`` of pix2pix / taming-transformers); returns a logits map
    ``(B, 1, H', W')`` (256x256 input with ``n_layers=3`` -> 30x30). ``norm`` is ``"batch"``
    (VQGAN), ``"group"`` or ``"none"``; weights are initialised as in VQGAN."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        use_bias = norm in ("none", None)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias), _norm2d(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias), _norm2d(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*layers)
        self.apply(_vqgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def _vqgan_init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))``."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """``-mean(fake)``."""
    return -fake_logits.float().mean()


def adaptive_weight(nll_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's adaptive GAN weight ``||grad nll|| / (||grad g|| + 1e-4)`` w.r.t. ``last_layer``,
    clamped to ``[0, max_weight]`` and detached. Keeps both graphs (``retain_graph=True``).
    If ``g_loss`` does not reach ``last_layer`` the weight is 0."""
    nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    if nll_grads is None or g_grads is None:
        return torch.zeros((), device=last_layer.device)
    w = torch.linalg.vector_norm(nll_grads.float()) / (torch.linalg.vector_norm(g_grads.float()) + 1e-4)
    return w.clamp(0.0, max_weight).detach()


def adopt_weight(weight: float, step: int, start: int, value: float = 0.0) -> float:
    """``weight`` from step ``start`` on, ``value`` (0) before."""
    return value if step < start else weight


# ----------------------------------------------------------------------------- audio


def _mono(x: Tensor) -> Tensor:
    """``(B, T)`` / ``(B, C, T)`` -> float32 ``(B, 1, T)`` (channels averaged)."""
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"expected audio (B, 1, T), got shape {tuple(x.shape)}")
    if x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    return x


class _PeriodDiscriminator(nn.Module):
    """HiFi-GAN ``DiscriminatorP``: the waveform reshaped to ``(B, 1, T/p, p)``, 2-D convs."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> None:
        super().__init__()
        self.period = period
        chans = [1, *channels]
        convs = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            stride = 1 if i == len(channels) - 1 else 3
            convs.append(weight_norm(nn.Conv2d(cin, cout, (5, 1), (stride, 1), padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            pad = self.period - t % self.period
            x = F.pad(x, (0, pad), mode="reflect" if pad < t else "constant")
            t = t + pad
        x = x.view(b, c, t // self.period, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.conv_post(x)
        return x.flatten(1), feats


class _DiscriminatorEnsemble(nn.Module):
    """Runs every sub-discriminator in ``self.discriminators`` on mono audio ``(B, 1, T)``;
    returns (logits per discriminator, feature maps per discriminator)."""

    discriminators: nn.ModuleList

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        x = _mono(x)
        logits, feats = [], []
        for d in self.discriminators:
            lg, ft = d(x)
            logits.append(lg)
            feats.append(ft)
        return logits, feats


class MultiPeriodDiscriminator(_DiscriminatorEnsemble):
    """HiFi-GAN multi-period discriminator. ``forward(x (B, 1, T))`` -> (logits ``(B, N_p)`` per
    period, feature maps per period). Multi-channel input is averaged to mono."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> None:
        super().__init__()
        self.periods = tuple(periods)
        self.discriminators = nn.ModuleList([_PeriodDiscriminator(p, channels) for p in self.periods])



class _STFTDiscriminator(nn.Module):
    """EnCodec ``DiscriminatorSTFT``: 2-D convs over the complex STFT (real, imag channels)."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, filters: int = 32, dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        k = (3, 9)
        convs = [weight_norm(nn.Conv2d(2, filters, k, padding=(1, 4)))]
        for d in dilations:
            convs.append(weight_norm(nn.Conv2d(filters, filters, k, stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        convs.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        ctx = torch.autocast(device_type=x.device.type, enabled=False) if x.device.type in ("cuda", "cpu") else contextlib.nullcontext()
        with ctx:
            spec = torch.stft(
                x.squeeze(1).float(), self.n_fft, self.hop_length, self.win_length, window=self.window.float(),
                center=True, pad_mode="constant", normalized=True, return_complex=True,
            )
        z = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3).to(x.dtype)  # (B, 2, frames, freq)
        feats = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), 0.2)
            feats.append(z)
        z = self.conv_post(z)
        return z, feats


class MultiScaleSTFTDiscriminator(_DiscriminatorEnsemble):
    """EnCodec multi-scale STFT discriminator. ``forward(x (B, 1, T))`` -> (logits maps
    ``(B, 1, frames, freq')`` per scale, feature maps per scale)."""

    def __init__(
        self,
        n_ffts: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] = (256, 512, 128),
        win_lengths: Sequence[int] = (1024, 2048, 512),
        filters: int = 32,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [_STFTDiscriminator(n, h, w, filters) for n, h, w in zip(n_ffts, hop_lengths, win_lengths)]
        )



def feature_matching_loss(real_feats: Sequence, fake_feats: Sequence) -> Tensor:
    """Sum of L1 distances between matching feature maps (nested lists of any depth), real
    detached: DAC/MelGAN feature matching (summed over layers and discriminators, as DAC)."""
    total = None
    for r, f in zip(_flatten(real_feats), _flatten(fake_feats), strict=True):
        term = F.l1_loss(f.float(), r.detach().float())
        total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_matching_loss got no feature maps")
    return total


def _flatten(feats) -> list[Tensor]:
    if isinstance(feats, Tensor):
        return [feats]
    out: list[Tensor] = []
    for f in feats:
        out += _flatten(f)
    return out


def _as_list(logits) -> list[Tensor]:
    return [logits] if isinstance(logits, Tensor) else list(logits)


def lsgan_d_loss(real_logits_list, fake_logits_list) -> Tensor:
    """LS-GAN discriminator loss ``mean((1 - real)^2) + mean(fake^2)``, summed over discriminators (DAC)."""
    reals, fakes = _as_list(real_logits_list), _as_list(fake_logits_list)
    if len(reals) != len(fakes) or not reals:
        raise ValueError("lsgan_d_loss needs equally many (>0) real and fake logits")
    return sum((1.0 - r.float()).square().mean() + f.float().square().mean() for r, f in zip(reals, fakes))


def lsgan_g_loss(fake_logits_list) -> Tensor:
    """LS-GAN generator loss ``mean((1 - fake)^2)``, summed over discriminators (DAC)."""
    fakes = _as_list(fake_logits_list)
    if not fakes:
        raise ValueError("lsgan_g_loss needs at least one logits tensor")
    return sum((1.0 - f.float()).square().mean() for f in fakes)
