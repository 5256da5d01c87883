"""fsqtok.data.loading: the finiteness check every decoded sample passes."""

import pytest
import torch

from fsqtok.data.loading import all_finite, checked_item
from fsqtok.media import MediaError


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_any_nan_or_inf_is_caught(bad):
    x = torch.zeros(3, 8, 8)
    x[1, 4, 5] = bad
    assert not all_finite(x)
    with pytest.raises(MediaError, match=r"^k: NaN or inf values$"):
        checked_item(0, "k", x, {}, None, "image")
    assert checked_item(0, "k", x, {}, None, "depth")["x"] is x  # depth: NaN marks invalid pixels


def test_inf_and_minus_inf_together_are_caught():
    assert not all_finite(torch.tensor([float("inf"), float("-inf"), 0.0]))  # their sum is NaN


def test_finite_values_whose_sum_overflows_pass():
    assert all_finite(torch.full((4,), 60000.0, dtype=torch.float16))  # the float16 sum is inf
    assert all_finite(torch.full((4,), 3e38))  # the float32 sum is inf


def test_integers_bools_and_empty_tensors_are_finite():
    assert all_finite(torch.arange(10)) and all_finite(torch.ones(3, dtype=torch.bool))
    assert all_finite(torch.zeros(0, 3))
