import pytest
import torch
from torch import nn

from fsqtok.losses import (
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


def test_patchgan_shapes():
    assert PatchGANDiscriminator()(torch.randn(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    d = PatchGANDiscriminator(in_channels=1, ndf=8, n_layers=2)
    assert d(torch.randn(2, 1, 32, 32)).shape == (2, 1, 6, 6)
    # video: frames folded into the batch at the call site
    v = torch.randn(2, 3, 4, 32, 32)
    assert PatchGANDiscriminator(ndf=8)(v.transpose(1, 2).flatten(0, 1)).shape == (8, 1, 2, 2)


def test_hinge_known_values():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1-real) = [0, .5, 2] -> 2.5/3 ; relu(1+fake) = [0, 1, 2] -> 1
    assert torch.allclose(hinge_d_loss(real, fake), torch.tensor(0.5 * (2.5 / 3 + 1.0)))
    assert torch.allclose(hinge_g_loss(fake), torch.tensor(1 / 3))


def test_lsgan_known_values():
    r, f = [torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 2.0])]
    assert torch.allclose(lsgan_d_loss(r, f), torch.tensor(0.5 + 2.0))
    assert torch.allclose(lsgan_g_loss(f), torch.tensor(1.0))
    assert torch.allclose(lsgan_g_loss(f + f), torch.tensor(2.0))


def test_adaptive_weight_matches_formula():
    last = nn.Linear(4, 3)
    h = torch.randn(5, 4)
    out = last(h)
    nll = out.square().mean()
    g = -(out * torch.tensor([1.0, -2.0, 3.0])).mean()
    w = adaptive_weight(nll, g, last.weight)
    gn = torch.autograd.grad(nll, last.weight, retain_graph=True)[0]
    gg = torch.autograd.grad(g, last.weight, retain_graph=True)[0]
    assert torch.allclose(w, gn.norm() / (gg.norm() + 1e-4))
    assert not w.requires_grad
    assert adaptive_weight(nll * 1e12, g, last.weight, max_weight=7.0).item() == 7.0
    (nll + w * g).backward()  # graphs retained


def test_adopt_weight():
    assert adopt_weight(0.8, step=9, start=10) == 0.0
    assert adopt_weight(0.8, step=10, start=10) == 0.8


@pytest.mark.parametrize("cls", [MultiPeriodDiscriminator, MultiScaleSTFTDiscriminator])
def test_audio_discriminator_outputs(cls):
    d = cls()
    logits, feats = d(torch.randn(2, 1, 4001))
    n = 5 if cls is MultiPeriodDiscriminator else 3
    assert len(logits) == len(feats) == n
    assert all(lg.shape[0] == 2 and torch.isfinite(lg).all() for lg in logits)
    assert all(len(f) == 5 and all(t.shape[0] == 2 for t in f) for f in feats)


def test_feature_matching_detaches_real():
    real = [[torch.ones(2, 3, requires_grad=True)], [torch.zeros(2, 2, requires_grad=True), torch.ones(1)]]
    fake = [[torch.zeros(2, 3, requires_grad=True)], [torch.ones(2, 2, requires_grad=True), torch.ones(1)]]
    loss = feature_matching_loss(real, fake)
    assert torch.allclose(loss, torch.tensor(2.0))
    loss.backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None
