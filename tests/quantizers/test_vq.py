"""VQ baseline: nearest codes, losses, EMA and restarts."""

import pytest
import torch

from fsqtok.quantizers import VectorQuantizer


def test_indices_are_nearest_codes_and_decode_matches():
    vq = VectorQuantizer(32, 6).eval()
    z = torch.randn(3, 6, 5, 5)
    out = vq(z)
    flat = z.movedim(1, -1).reshape(-1, 6)
    expected = torch.cdist(flat, vq.codebook).argmin(1).view(3, 5, 5)
    assert torch.equal(out.indices, expected)
    assert torch.allclose(vq.decode_indices(out.indices), out.z_q, atol=1e-6)


def test_commitment_loss_value_and_straight_through():
    vq = VectorQuantizer(16, 4, commitment_weight=0.5).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    q = vq.decode_indices(out.indices)
    assert torch.allclose(out.loss, 0.5 * (z - q).pow(2).mean(), atol=1e-6)
    g, = torch.autograd.grad(out.z_q.sum(), z)
    assert torch.allclose(g, torch.ones_like(g))


def test_gradient_codebook_gets_codebook_loss():
    vq = VectorQuantizer(16, 4, ema_decay=None)
    out = vq(torch.randn(2, 4, 3, 3))
    out.loss.backward()
    assert vq.embed.grad is not None and vq.embed.grad.abs().sum() > 0


def test_ema_moves_used_codes_towards_data():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, ema_decay=0.5).train()
    data = torch.randn(1, 2, 64, 1) + 10.0
    before = (vq(data).z_q - data).pow(2).mean()
    for _ in range(20):
        vq(data)
    after = (vq(data).z_q - data).pow(2).mean()
    assert after < before / 10
    # the default has no restarts: most codes stay unused (the collapse the paper describes)
    assert vq(data).usage() <= 0.5


def test_dead_code_restart_revives_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, ema_decay=0.5, dead_code_threshold=0.5).train()
    data = torch.randn(1, 2, 256, 1) * 0.1 + 10.0
    for _ in range(30):
        vq(data)
    assert vq(data).usage() > 0.5


def test_errors():
    vq = VectorQuantizer(8, 2)
    with pytest.raises(ValueError, match=r"C=2"):
        vq(torch.randn(1, 3, 2))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.decode_indices(torch.tensor([[8]]))
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(8, 2, ema_decay=1.5)
