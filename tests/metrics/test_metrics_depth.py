import math

import torch

from fsqtok.metrics import DepthErrorAccumulator, depth_errors


def test_known_values_and_invalid_pixels():
    target = torch.tensor([[[[1.0, 2.0], [4.0, float("nan")]]], [[[2.0, 0.0], [float("inf"), -1.0]]]])
    pred = torch.tensor([[[[1.0, 3.0], [2.0, 123.0]]], [[[3.0, 9.0], [9.0, 9.0]]]])
    e = depth_errors(pred, target)
    # sample 0: valid errors 0, 1, -2 ; sample 1: only (2 -> 3)
    assert torch.allclose(e["rmse"], torch.tensor([math.sqrt(5 / 3), 1.0]))
    assert torch.allclose(e["abs_rel"], torch.tensor([(0 + 0.5 + 0.5) / 3, 0.5]))
    assert torch.allclose(e["delta1"], torch.tensor([1 / 3, 0.0]))
    # mask further restricts; pred at invalid pixels (even NaN) is ignored
    mask = torch.tensor([[[[True, True], [False, True]]], [[[True, True], [True, True]]]])
    pred2 = pred.clone()
    pred2[0, 0, 1, 0] = float("nan")
    e2 = depth_errors(pred2, target, mask)
    assert torch.allclose(e2["rmse"], torch.tensor([math.sqrt(1 / 2), 1.0]))
    assert torch.allclose(e2["delta1"], torch.tensor([0.5, 0.0]))


def test_nonpositive_prediction_is_not_within_delta():
    t = torch.ones(1, 1, 1, 2)
    p = torch.tensor([[[[-1.0, 1.1]]]])
    assert torch.allclose(depth_errors(p, t)["delta1"], torch.tensor([0.5]))


def test_sample_without_valid_pixels_is_nan():
    e = depth_errors(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert all(torch.isnan(v).all() for v in e.values())


def test_accumulator_equals_one_shot():
    target = torch.rand(7, 1, 6, 6) * 5 + 0.1
    target[target < 1.0] = float("nan")
    target[3] = 0.0  # no valid pixels
    pred = target.nan_to_num(2.0) * (1 + 0.3 * torch.randn_like(target))
    one = depth_errors(pred, target)
    expected = {k: v.nanmean().item() for k, v in one.items()}
    acc = DepthErrorAccumulator()
    for sl in (slice(0, 2), slice(2, 5), slice(5, 7)):
        acc.update(pred[sl], target[sl])
    assert acc.count == 6
    for k, v in acc.compute().items():
        assert math.isclose(v, expected[k], rel_tol=1e-6)
    # merge across "processes" and a no-op all_reduce without torch.distributed
    a, b = DepthErrorAccumulator(), DepthErrorAccumulator()
    a.update(pred[:4], target[:4])
    b.update(pred[4:], target[4:])
    merged = (a + b).all_reduce().compute()
    for k, v in merged.items():
        assert math.isclose(v, expected[k], rel_tol=1e-6)
    assert all(math.isnan(v) for v in DepthErrorAccumulator().compute().values())
