import sys

import torch

from fsqtok.metrics import mel_distance, pesq_stoi, si_sdr, stft_distance


def test_si_sdr_scale_invariant():
    ref = torch.randn(3, 2, 4000)
    est = ref + 0.3 * torch.randn_like(ref)
    a = si_sdr(est, ref)
    assert a.shape == (3,)
    assert torch.allclose(si_sdr(5.0 * est, ref), a, atol=1e-4)
    assert torch.allclose(si_sdr(0.01 * est, ref), a, atol=1e-4)


def test_si_sdr_ignores_a_dc_offset():
    ref = torch.randn(2, 1, 4000)
    est = ref + 0.3 * torch.randn_like(ref)
    assert torch.allclose(si_sdr(est + 0.5, ref - 0.2), si_sdr(est, ref), atol=1e-3)  # both made zero-mean


def test_si_sdr_known_value_orthogonal_noise():
    ref = torch.randn(2, 1, 8000, dtype=torch.float64)
    ref = ref - ref.mean(-1, keepdim=True)
    noise = torch.randn_like(ref)
    noise = noise - noise.mean(-1, keepdim=True)
    noise = noise - (noise * ref).sum(-1, keepdim=True) / ref.square().sum(-1, keepdim=True) * ref
    for db in (0.0, 10.0, 20.0):
        scale = (ref.square().sum(-1, keepdim=True) / noise.square().sum(-1, keepdim=True) / 10 ** (db / 10)).sqrt()
        assert torch.allclose(si_sdr(ref + scale * noise, ref), torch.full((2,), db, dtype=torch.float32), atol=1e-3)


def test_si_sdr_silence_is_finite():
    z = torch.zeros(2, 1, 100)
    assert torch.isfinite(si_sdr(z, z)).all() and torch.isfinite(si_sdr(torch.randn(2, 1, 100), z)).all()


def test_spectral_distances():
    x = torch.randn(2, 1, 8000)
    for fn in (lambda a, b: mel_distance(a, b, sample_rate=16000), stft_distance):
        assert torch.equal(fn(x, x), torch.zeros(2))
        d = fn(x + 0.1 * torch.randn_like(x), x)
        assert d.shape == (2,) and (d > 0).all()
        assert torch.isfinite(fn(torch.zeros_like(x), torch.zeros_like(x))).all()


def test_pesq_stoi_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # import fails
    monkeypatch.setitem(sys.modules, "pystoi", None)
    x = torch.randn(2, 1, 16000)
    assert pesq_stoi(x, x, sample_rate=16000) == {}
