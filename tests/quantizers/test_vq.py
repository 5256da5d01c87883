"""VQ baseline: nearest codes, losses, EMA and restarts."""

import pytest
import torch

from fsqtok.quantizers import NonFiniteLatentError, VectorQuantizer


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


def test_dead_code_threshold_above_one_restarts_only_dead_codes():
    """Issue 10 item 17: a restarted code got EMA usage 1.0, below any threshold > 1, so every code
    was re-seeded at every step. A re-seeded code equals one batch row exactly; EMA means do not."""
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 2, dead_code_threshold=2.0).train()  # ema_decay 0.99
    reseeded = []
    for _ in range(12):
        data = torch.randn(1, 2, 512, 1)
        vq(data)
        rows = data[0, :, :, 0].t()
        reseeded.append(int((vq.embed[:, None, :] == rows[None]).all(-1).any(-1).sum()))
    assert reseeded[0] == 16  # initial usage 1.0 is below the threshold: every code starts from data
    assert sum(reseeded[1:]) <= 4, reseeded  # 512 rows for 16 codes: afterwards hardly any code is dead
    assert bool((vq.ema_cluster_size >= 2.0).all())
    # a re-seeded code decodes to the row it was seeded with: its EMA sum matches its usage
    assert torch.allclose(vq.ema_embed_sum / vq.ema_cluster_size[:, None], vq.embed, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("dead_code_threshold", [0.0, 2.0])
def test_bf16_module_trains(dead_code_threshold):
    """Issue 10 item 17: ``index_add_`` crashed on a bf16 module (float32 source into bf16 sums)."""
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, in_channels=8, dead_code_threshold=dead_code_threshold).to(torch.bfloat16).train()
    z = torch.randn(2, 8, 6, 6, dtype=torch.bfloat16, requires_grad=True)
    out = vq(z)
    (out.z_q.float().square().mean() + out.loss).backward()
    assert out.z_q.dtype == torch.bfloat16 and z.grad is not None
    assert vq.embed.dtype == torch.bfloat16 and bool(torch.isfinite(vq.embed.float()).all())
    assert out.indices.shape == (2, 6, 6)


def test_non_finite_latents_never_become_indices_nor_poison_the_codebook():
    """Issue 10 item 1: argmin over NaN distances returned an arbitrary code without complaint,
    and the EMA update then turned the whole codebook into NaN."""
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, ema_decay=0.5, dead_code_threshold=0.5).train()
    z = torch.randn(1, 2, 64, 1)
    z[0, 1, 5, 0] = float("nan")
    z[0, 0, 9, 0] = float("inf")
    out = vq(z)
    with pytest.raises(NonFiniteLatentError, match="^VectorQuantizer: "):
        out.indices
    for buf in (vq.embed, vq.ema_cluster_size, vq.ema_embed_sum):
        assert bool(torch.isfinite(buf).all())
    # the two non-finite rows count for nothing: usage was 1 per code, now 0.5 * 8 + 0.5 * 62
    assert vq.ema_cluster_size.sum().item() == pytest.approx(35.0)
    assert vq.eval()(torch.randn(1, 2, 4, 1)).indices.shape == (1, 4, 1)
    # restarts re-seed from finite rows only (with threshold 2 every code restarts at the first step)
    restarting = VectorQuantizer(8, 2, dead_code_threshold=2.0).train()
    z = torch.randn(1, 2, 64, 1)
    z[0, 0, :48, 0] = float("nan")
    restarting(z)
    assert bool(torch.isfinite(restarting.embed).all())
    vq.embed[3, 0] = float("nan")  # a corrupt codebook has no valid nearest codes either
    with pytest.raises(NonFiniteLatentError):
        vq(torch.randn(1, 2, 4, 1)).indices


def test_errors():
    vq = VectorQuantizer(8, 2)
    with pytest.raises(ValueError, match=r"C=2"):
        vq(torch.randn(1, 3, 2))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.decode_indices(torch.tensor([[8]]))
    with pytest.raises(ValueError, match="ema_decay"):
        VectorQuantizer(8, 2, ema_decay=1.5)
