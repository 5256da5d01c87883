import warnings

import pytest
import torch

from fsqtok.losses import PerceptualLoss, maybe_perceptual_loss
from fsqtok.losses import perceptual as perceptual_mod


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(perceptual_mod, "_warned", False)
    return tmp_path / "hub"


def test_absent_returns_none_with_one_warning(empty_hub, tmp_path):
    assert not PerceptualLoss.available()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert maybe_perceptual_loss() is None
        assert maybe_perceptual_loss() is None
        assert maybe_perceptual_loss(tmp_path / "missing.pth") is None
    assert len([w for w in rec if "perceptual" in str(w.message)]) == 1
    with pytest.raises(FileNotFoundError):
        PerceptualLoss()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    from torchvision.models import vgg16

    path = tmp_path_factory.mktemp("w") / "vgg16-random.pth"
    torch.save({f"features.{k}": v for k, v in vgg16(weights=None).features.state_dict().items()}, path)
    return path


def test_present_gives_finite_scalar_with_grad(vgg_file, empty_hub):
    assert PerceptualLoss.available(vgg_file)
    loss = maybe_perceptual_loss(vgg_file)
    assert isinstance(loss, PerceptualLoss)
    assert all(not p.requires_grad for p in loss.parameters())
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    d = loss(x, y)
    assert d.shape == (2,) and torch.isfinite(d).all() and (d > 0).all()
    d.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.allclose(loss(y, y), torch.zeros(2), atol=1e-6)


def test_found_in_torch_hub_cache(vgg_file, empty_hub):
    ckpt = empty_hub / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "vgg16-397923af.pth").write_bytes(vgg_file.read_bytes())
    assert PerceptualLoss.available()
    assert isinstance(maybe_perceptual_loss(), PerceptualLoss)
