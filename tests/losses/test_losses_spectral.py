import pytest
import torch

from fsqtok.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss


@pytest.fixture(scope="module")
def mel():
    return MultiScaleMelLoss(sample_rate=16000)


@pytest.fixture(scope="module")
def stft():
    return MultiResolutionSTFTLoss()


def test_mel_transforms_are_submodules_scaled_to_rate(mel):
    assert len(mel.mels) == 7
    assert all(isinstance(m, torch.nn.Module) for m in mel.mels)
    assert mel.window_lengths[-1] == 744  # 2048 * 16000 / 44100, even
    assert MultiScaleMelLoss(sample_rate=44100).window_lengths == [32, 64, 128, 256, 512, 1024, 2048]


@pytest.mark.parametrize("name", ["mel", "stft"])
def test_zero_for_identical_positive_otherwise(name, request):
    loss = request.getfixturevalue(name)
    x = torch.randn(2, 1, 4000)
    assert loss(x, x.clone()).item() == 0.0
    assert loss(x + 0.1 * torch.randn_like(x), x).item() > 0
    assert loss(0.5 * x, x).item() > 0


@pytest.mark.parametrize("name", ["mel", "stft"])
def test_finite_on_silence_with_finite_grads(name, request):
    loss = request.getfixturevalue(name)
    z = torch.zeros(2, 1, 4000, requires_grad=True)
    val = loss(z, torch.zeros(2, 1, 4000))
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(z.grad).all()
    x = torch.randn(2, 1, 4000, requires_grad=True)
    val = loss(x, torch.zeros(2, 1, 4000))
    val.backward()
    assert torch.isfinite(val) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["mel", "stft"])
def test_bf16_and_autocast_compute_in_float32(name, request):
    loss = request.getfixturevalue(name)
    x, y = torch.randn(2, 2, 4000), torch.randn(2, 2, 4000)
    ref = loss(x.bfloat16().float(), y.bfloat16().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(x.bfloat16(), y.bfloat16())
    assert out.dtype == torch.float32 and torch.isfinite(out)
    assert torch.allclose(out, ref, rtol=1e-5)


def test_per_sample_shape(mel, stft):
    x, y = torch.randn(3, 1, 4000), torch.randn(3, 1, 4000)
    assert mel.per_sample(x, y).shape == (3,) and stft.per_sample(x, y).shape == (3,)
    assert torch.allclose(mel(x, y), mel.per_sample(x, y).mean())
