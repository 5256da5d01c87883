import pytest
import torch

from fsqtok.losses import ReconstructionLoss


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_unmasked_matches_torch(kind):
    x, y = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    ref = (x - y).abs().mean() if kind == "l1" else (x - y).square().mean()
    assert torch.allclose(ReconstructionLoss(kind)(x, y), ref)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_mask_ignores_invalid_values_exactly(kind):
    loss = ReconstructionLoss(kind)
    y = torch.rand(2, 1, 8, 8) + 0.5
    mask = torch.rand(2, 1, 8, 8) > 0.4
    x0 = torch.randn(2, 1, 8, 8)

    def run(x_fill, y_fill):
        x = torch.where(mask, x0, x_fill).requires_grad_(True)
        t = torch.where(mask, y, y_fill)
        val = loss(x, t, mask)
        (g,) = torch.autograd.grad(val, x)
        return val, g

    v1, g1 = run(torch.tensor(0.0), torch.tensor(0.0))
    v2, g2 = run(torch.tensor(1e6), torch.tensor(float("nan")))
    assert torch.equal(v1, v2) and torch.equal(g1, g2)
    assert torch.isfinite(v1) and (g1[~mask] == 0).all()
    d = (x0 - y)[mask]
    expected = d.abs().mean() if kind == "l1" else d.square().mean()
    assert torch.allclose(v1, expected)


def test_broadcast_mask_and_all_invalid_is_zero_with_grad():
    loss = ReconstructionLoss("l1")
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = torch.full((2, 3, 4, 4), float("nan"))
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    val = loss(x, y, mask)
    assert val.item() == 0.0
    val.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_bad_kind():
    with pytest.raises(ValueError):
        ReconstructionLoss("l3")
