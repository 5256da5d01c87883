"""Audio quality metrics, one value per sample: SI-SDR, mel and STFT distances, optional PESQ/STOI."""

from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor

__all__ = ["si_sdr", "mel_distance", "stft_distance", "pesq_stoi"]


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def si_sdr(est: Tensor, ref: Tensor) -> Tensor:
    """Scale-invariant SDR in dB per sample ``(B,)`` (Le Roux et al. 2019).

    torchmetrics' ``scale_invariant_signal_distortion_ratio`` (zero-mean) in float64, with
    channels and time flattened together; its machine-epsilon terms keep silence finite.
    """
    if est.shape != ref.shape or est.ndim < 2:
        raise ValueError(f"si_sdr expects two (B, ...) tensors of the same shape, got {tuple(est.shape)} vs {tuple(ref.shape)}")
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio  # slow import: on first use

    return scale_invariant_signal_distortion_ratio(_flat(est).double(), _flat(ref).double(), zero_mean=True).float()


@functools.lru_cache(maxsize=8)
def _mel_module(sample_rate: int):
    from ..losses.spectral import MultiScaleMelLoss

    return MultiScaleMelLoss(sample_rate=sample_rate, mag_weight=0.0, log_weight=1.0)


@functools.lru_cache(maxsize=2)
def _stft_module():
    from ..losses.spectral import MultiResolutionSTFTLoss

    return MultiResolutionSTFTLoss(sc_weight=0.0, mag_weight=1.0)


@torch.no_grad()
def mel_distance(est: Tensor, ref: Tensor, sample_rate: int = 16000) -> Tensor:
    """Multi-scale log-mel L1 distance per sample ``(B,)`` (DAC's mel loss without the
    magnitude term)."""
    m = _mel_module(int(sample_rate))
    return m.to(est.device).per_sample(est, ref)


@torch.no_grad()
def stft_distance(est: Tensor, ref: Tensor) -> Tensor:
    """Multi-resolution STFT log-magnitude L1 distance per sample ``(B,)``."""
    return _stft_module().to(est.device).per_sample(est, ref)


def pesq_stoi(est: Tensor, ref: Tensor, sample_rate: int) -> dict[str, Tensor]:
    """``{"pesq": (B,), "stoi": (B,)}`` where the optional ``pesq`` / ``pystoi`` packages are
    installed (imported lazily), else ``{}``. Channels are averaged to mono; PESQ runs at
    16 kHz wide-band (8 kHz narrow-band for 8 kHz input), resampling as needed. Items PESQ
    rejects (e.g. silence) give NaN."""
    out: dict[str, Tensor] = {}
    e = est.detach().float().cpu()
    r = ref.detach().float().cpu()
    if e.ndim == 3:
        e, r = e.mean(1), r.mean(1)
    try:
        from pesq import pesq as _pesq  # type: ignore[import-not-found]
    except Exception:
        _pesq = None
    if _pesq is not None:
        import torchaudio.functional as AF

        fs = 8000 if sample_rate == 8000 else 16000
        mode = "nb" if fs == 8000 else "wb"
        ee, rr = (AF.resample(v, sample_rate, fs) if sample_rate != fs else v for v in (e, r))
        vals = []
        for a, b in zip(ee.numpy(), rr.numpy()):
            try:
                vals.append(float(_pesq(fs, b, a, mode)))
            except Exception:
                vals.append(float("nan"))
        out["pesq"] = torch.tensor(vals)
    try:
        from pystoi import stoi as _stoi  # type: ignore[import-not-found]
    except Exception:
        _stoi = None
    if _stoi is not None:
        vals = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for a, b in zip(e.numpy(), r.numpy()):
                try:
                    vals.append(float(_stoi(b, a, sample_rate, extended=False)))
                except Exception:
                    vals.append(float("nan"))
        out["stoi"] = torch.tensor(vals)
    return out
