"""Spectral audio losses: DAC-style multi-scale mel and multi-resolution STFT.

Both take waveforms ``(B, C, T)`` (or ``(B, T)``), always compute in float32 with autocast
off, are exactly 0 for identical inputs and finite (with finite gradients) on silence.
``per_sample`` returns a ``(B,)`` tensor (used by :mod:`fsqtok.metrics.audio`); ``forward``
is its mean.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor, nn

__all__ = ["MultiScaleMelLoss", "MultiResolutionSTFTLoss"]

#: DAC's reference configuration (44.1 kHz); window lengths are scaled to the actual rate.
DAC_REFERENCE_RATE = 44100
DAC_WINDOW_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_N_MELS = (5, 10, 20, 40, 80, 160, 320)


def _as_float_batch(x: Tensor) -> Tensor:
    """``(B, C, T)`` / ``(B, T)`` -> float32 ``(B, C, T)``."""
    if x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != 3:
        raise ValueError(f"expected audio (B, C, T) or (B, T), got shape {tuple(x.shape)}")
    return x.float()


def _no_autocast(x: Tensor):
    try:
        return torch.autocast(device_type=x.device.type, enabled=False)
    except RuntimeError:  # device type without autocast support
        return contextlib.nullcontext()


def _max_nonempty_mels(n_mels: int, n_fft: int, sample_rate: int) -> int:
    """``n_mels``, lowered until no mel filter is empty (narrow low-frequency filters can fall
    between FFT bins when the window is short at low sample rates)."""
    while n_mels > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fb = torchaudio.functional.melscale_fbanks(
                n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney", mel_scale="slaney"
            )
        if bool((fb.max(dim=0).values > 0).all()):
            break
        n_mels -= 1
    return n_mels


class MultiScaleMelLoss(nn.Module):
    """DAC's multi-scale mel loss: per scale, ``log_weight * L1(log10(clamp(mel)^pow))``
    plus ``mag_weight * L1(mel)``, averaged over scales (the mel spectrograms are magnitude,
    ``power=1``).

    ``window_lengths`` are given at ``reference_rate`` (DAC: 44.1 kHz) and scaled by
    ``sample_rate / reference_rate``; the number of mel bands of a scale is capped so that
    no filter is empty. The ``MelSpectrogram`` transforms are built once, as submodules.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        window_lengths: Sequence[int] = DAC_WINDOW_LENGTHS,
        n_mels: Sequence[int] = DAC_N_MELS,
        reference_rate: int = DAC_REFERENCE_RATE,
        clamp_eps: float = 1e-5,
        mag_weight: float = 1.0,
        log_weight: float = 1.0,
        pow: float = 2.0,
        min_window: int = 16,
    ) -> None:
        super().__init__()
        if len(window_lengths) != len(n_mels):
            raise ValueError("window_lengths and n_mels must have the same length")
        self.sample_rate = int(sample_rate)
        self.clamp_eps, self.mag_weight, self.log_weight, self.pow = clamp_eps, mag_weight, log_weight, pow
        self.window_lengths: list[int] = []
        mels = []
        for w, m in zip(window_lengths, n_mels):
            n_fft = max(min_window, int(round(w * self.sample_rate / reference_rate)))
            n_fft += n_fft % 2  # even, so hop = n_fft // 4 is exact-ish and bins = n_fft/2 + 1
            m = _max_nonempty_mels(int(m), n_fft, self.sample_rate)
            self.window_lengths.append(n_fft)
            mels.append(
                torchaudio.transforms.MelSpectrogram(
                    sample_rate=self.sample_rate,
                    n_fft=n_fft,
                    win_length=n_fft,
                    hop_length=max(1, n_fft // 4),
                    f_min=0.0,
                    f_max=self.sample_rate / 2,
                    n_mels=m,
                    power=1.0,
                    center=True,
                    pad_mode="constant",
                    norm="slaney",
                    mel_scale="slaney",
                )
            )
        self.mels = nn.ModuleList(mels)

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        """``(B,)`` loss of each item (mean over channels, scales averaged)."""
        with _no_autocast(x):
            x, y = _as_float_batch(x), _as_float_batch(y)
            b = x.shape[0]
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
            total = x.new_zeros(b)
            for mel in self.mels:
                mx, my = mel(x), mel(y)  # (B*C, n_mels, frames)
                per = x.new_zeros(b)
                if self.log_weight:
                    lx = mx.clamp_min(self.clamp_eps).pow(self.pow).log10()
                    ly = my.clamp_min(self.clamp_eps).pow(self.pow).log10()
                    per = per + self.log_weight * (lx - ly).abs().reshape(b, -1).mean(1)
                if self.mag_weight:
                    per = per + self.mag_weight * (mx - my).abs().reshape(b, -1).mean(1)
                total = total + per
            return total / len(self.mels)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.per_sample(x, y).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions
    (Parallel WaveGAN defaults: FFT 1024/2048/512, hop 120/240/50, window 600/1200/240)."""

    def __init__(
        self,
        fft_sizes: Sequence[int] = (1024, 2048, 512),
        hop_sizes: Sequence[int] = (120, 240, 50),
        win_lengths: Sequence[int] = (600, 1200, 240),
        sc_weight: float = 1.0,
        mag_weight: float = 1.0,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if not (len(fft_sizes) == len(hop_sizes) == len(win_lengths)):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.resolutions = [(int(n), int(h), int(w)) for n, h, w in zip(fft_sizes, hop_sizes, win_lengths)]
        self.sc_weight, self.mag_weight, self.eps = sc_weight, mag_weight, eps
        for i, (_, _, w) in enumerate(self.resolutions):
            self.register_buffer(f"window_{i}", torch.hann_window(w), persistent=False)

    def _magnitude(self, x: Tensor, i: int) -> Tensor:
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(
            x, n_fft, hop_length=hop, win_length=win, window=getattr(self, f"window_{i}").to(x),
            center=True, pad_mode="constant", return_complex=True,
        )
        # sqrt(clamp(|S|^2)) keeps the gradient finite where |S| = 0 (silence)
        return (spec.real.square() + spec.imag.square()).clamp_min(self.eps).sqrt()

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        """``(B,)`` loss of each item (channels pooled, resolutions averaged)."""
        with _no_autocast(x):
            x, y = _as_float_batch(x), _as_float_batch(y)
            b = x.shape[0]
            x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
            total = x.new_zeros(b)
            for i in range(len(self.resolutions)):
                mx, my = self._magnitude(x, i).reshape(b, -1), self._magnitude(y, i).reshape(b, -1)
                per = x.new_zeros(b)
                if self.sc_weight:
                    num = (my - mx).square().sum(1)
                    den = my.square().sum(1)
                    # ||Y - X||_F / ||Y||_F; 0 for identical inputs, finite on silence
                    per = per + self.sc_weight * (num + self.eps).sqrt() / (den + self.eps).sqrt() * (num > 0)
                if self.mag_weight:
                    per = per + self.mag_weight * (my.log() - mx.log()).abs().mean(1)
                total = total + per
            return total / len(self.resolutions)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.per_sample(x, y).mean()
