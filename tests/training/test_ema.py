"""EMA of the weights: warm-up decay, swap in and out, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from fsqtok.training import EMA


def test_ema_tracks_and_swaps():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, 0.5)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # warm-up decay min(0.5, 1/10) = 0.1 -> shadow moves 90% of the way
    torch.testing.assert_close(ema.shadow["weight"], before + 0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # decay min(0.5, 2/11): shadow += (1 - 2/11) * (w - shadow)
    torch.testing.assert_close(ema.shadow["weight"], before + 0.9 + (9 / 11) * 1.1)
    with ema.swapped_into(model):
        torch.testing.assert_close(model.weight, ema.shadow["weight"])
    torch.testing.assert_close(model.weight, before + 2.0)
    other = EMA(torch.nn.Linear(2, 2), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 2
    torch.testing.assert_close(other.shadow["weight"], ema.shadow["weight"])


def test_bad_decay_is_an_error():
    with pytest.raises(ValueError, match="decay"):
        EMA(torch.nn.Linear(1, 1), 1.0)
