"""Residual FSQ: stages, prefixes and quantize dropout."""

import warnings

import pytest
import torch

from fsqtok.quantizers import FSQ, NonFiniteLatentError, ResidualFSQ

PAPER_LEVELS = [[8, 6, 5], [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 8, 8, 6, 5], [8, 8, 8, 5, 5, 5]]


def test_one_stage_equals_plain_fsq():
    torch.manual_seed(0)
    fsq = FSQ([8, 5, 5, 5], in_channels=16)
    rfsq = ResidualFSQ([8, 5, 5, 5], num_stages=1, in_channels=16)
    rfsq.load_state_dict({**fsq.state_dict(), "dropout_step": torch.tensor(0)})
    z = torch.randn(2, 16, 6, 6, requires_grad=True)
    a, b = fsq(z), rfsq(z)
    assert torch.equal(a.indices, b.indices[:, 0])
    assert torch.equal(a.z_q, b.z_q)
    ga, = torch.autograd.grad(a.z_q.square().sum(), z)
    gb, = torch.autograd.grad(b.z_q.square().sum(), z)
    assert torch.allclose(ga, gb)


def test_stages_refine_and_prefix_decoding():
    rfsq = ResidualFSQ([7, 5, 5, 5], num_stages=4)
    z = torch.randn(8, 4, 16, 16)
    out = rfsq(z)
    assert out.indices.shape == (8, 4, 16, 16)
    assert out.num_active == 4
    assert torch.equal(rfsq.decode_indices(out.indices), out.z_q)
    # the stages approximate the bounded value that FSQ rounds, bound(z) / (L // 2)
    target = (rfsq.fsq.bound(z.movedim(1, -1)) / torch.tensor([3.0, 2.0, 2.0, 2.0])).movedim(-1, 1)
    errors = [(rfsq.decode_indices(out.indices[:, :s]) - target).abs().max().item() for s in range(1, 5)]
    # each stage shrinks the worst-case error by about the level count (5 to 7)
    assert all(b < a / 4 for a, b in zip(errors, errors[1:])), errors


def stage_errors(rfsq: ResidualFSQ, z: torch.Tensor) -> torch.Tensor:
    """``(S, d)``: per channel, the max error of the first ``s`` stages against ``bound(z) / half_width``."""
    out = rfsq(z)
    half_width = rfsq.fsq._host_consts.half_width
    target = (rfsq.fsq.bound(rfsq.project_in(z).movedim(1, -1)) / half_width).movedim(-1, 1)
    return torch.stack([(rfsq.decode_codes(out.indices[:, :s]) - target).abs().amax(dim=(0, 2))
                        for s in range(1, rfsq.num_stages + 1)])


@pytest.mark.parametrize("levels,symmetric", [([L], False) for L in range(3, 9)] + [(lv, False) for lv in PAPER_LEVELS]
                         + [([4], True), ([2, 5, 8], True)])
def test_every_stage_shrinks_the_error_by_the_grid_ratio(levels, symmetric):
    """Issue 10 item 2: with even L, stage 1 saw [-L/2, L/2] on the grid [-L/2, L/2 - 1] and
    saturated (ResidualFSQ([8], 4): 0.125, 0.031, 0.0195, 0.018). Now, after s stages,
    error <= r^(1 - s) / (2 half_width) with r = L (odd) or L - 1 (even): geometric for every level."""
    num_stages = 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # levels below 5
        rfsq = ResidualFSQ(levels, num_stages=num_stages, symmetric=symmetric)
    L = torch.tensor(levels, dtype=torch.float64)
    r = L if symmetric else torch.where(L % 2 == 0, L - 1, L)  # the symmetric grid is centred for every L
    half_width = (L - 1) / 2 if symmetric else L // 2
    assert torch.equal(rfsq.stage_ratio, r)
    d = len(levels)
    torch.manual_seed(0)
    z = torch.cat([torch.linspace(-4, 4, 40001).expand(d, -1), torch.randn(d, 20000) * 3], 1)[None]
    errors = stage_errors(rfsq, z).double()
    s = torch.arange(1, num_stages + 1, dtype=torch.float64)[:, None]
    bound = r ** (1 - s) / (2 * half_width)
    assert bool((errors <= bound * (1 + 1e-3) + 2e-7).all()), (errors, bound)
    # and the bound is reached, so it pins the ratio: the first stages come within 10% of it
    assert bool((errors[:3] >= bound[:3] * 0.9).all()), (errors, bound)


def test_decode_codes_is_decode_indices_before_the_output_projection():
    rfsq = ResidualFSQ([8, 5, 5, 5], num_stages=3, in_channels=8, channel_last=True)
    out = rfsq(torch.randn(2, 5, 8))
    codes = rfsq.decode_codes(out.indices)
    assert codes.shape == (2, 4, 5)
    assert torch.equal(rfsq.project_out(codes).movedim(1, -1), rfsq.decode_indices(out.indices))
    assert torch.equal(rfsq.decode_indices(out.indices), out.z_q)


def test_legacy_levels_scale_keeps_old_tokens_decoding_as_before():
    """``stage_scale="levels"`` is the scale L^-i of residual tokenizers saved before the fix."""
    old, new = ResidualFSQ([8, 5], 2, stage_scale="levels"), ResidualFSQ([8, 5], 2)
    idx = torch.tensor([[[old.zero_index], [old.zero_index + 1]]])  # stage 1: channel 0 one step up
    assert torch.allclose(old.decode_indices(idx)[0, :, 0], torch.tensor([1 / 4 / 8, 0.0]))
    assert torch.allclose(new.decode_indices(idx)[0, :, 0], torch.tensor([1 / 4 / 7, 0.0]))
    # the legacy scale still saturates on even levels: its stage-3 error stays far above the fixed one's
    z = torch.linspace(-4, 4, 20001).view(1, 1, -1)
    legacy = stage_errors(ResidualFSQ([8], 4, stage_scale="levels"), z)[:, 0]
    assert legacy[3] > 0.015 > 10 * stage_errors(ResidualFSQ([8], 4), z)[3, 0]
    with pytest.raises(ValueError, match="stage_scale"):
        ResidualFSQ([8, 5], 2, stage_scale="L")


def test_non_finite_latents_never_become_indices():
    rfsq = ResidualFSQ([8, 5, 5, 5], num_stages=3, in_channels=8)
    z = torch.randn(2, 8, 4)
    z[0, 3, 1] = float("nan")
    out = rfsq(z)
    with pytest.raises(NonFiniteLatentError, match="^ResidualFSQ: "):
        out.indices
    with pytest.raises(NonFiniteLatentError):
        out.perplexity()
    z[0, 3, 1] = 1.0
    assert rfsq(z).indices.shape == (2, 3, 4)


def test_stage_scale_is_levels_to_minus_i():
    rfsq = ResidualFSQ([5, 7], num_stages=3)
    idx = torch.zeros(1, 3, 1, dtype=torch.long)
    idx[:, 2] = 1  # stage 2: digit 1 on channel 0, others at their lowest code
    codes0 = rfsq.fsq.indices_to_codes(torch.tensor([0]))[0]
    codes1 = rfsq.fsq.indices_to_codes(torch.tensor([1]))[0]
    expected = codes0 + codes0 / torch.tensor([5.0, 7.0]) + codes1 / torch.tensor([25.0, 49.0])
    assert torch.allclose(rfsq.decode_indices(idx)[0, :, 0], expected, atol=1e-7)


def test_quantize_dropout_stays_in_range_and_consistent():
    rfsq = ResidualFSQ([8, 5, 5, 5], num_stages=6, in_channels=8, quantize_dropout=True, seed=3)
    rfsq.train()
    seen = set()
    for _ in range(40):
        out = rfsq(torch.randn(2, 8, 4, 4) * 3)
        seen.add(out.num_active)
        assert int(out.indices.min()) >= 0 and int(out.indices.max()) < rfsq.codebook_size
        assert torch.all(out.indices[:, out.num_active:] == rfsq.zero_index)
        assert torch.equal(rfsq.decode_indices(out.indices), out.z_q)
    assert seen == set(range(1, 7))
    # evaluation uses every stage; no_grad works and draws nothing
    rfsq.eval()
    step = int(rfsq.dropout_step)
    with torch.no_grad():
        assert rfsq(torch.randn(1, 8, 2, 2)).num_active == 6
    assert int(rfsq.dropout_step) == step


def test_quantize_dropout_draws_are_reproducible_across_replicas():
    # two replicas (as on two ranks) with the same seed draw the same stage counts, with no communication
    a = ResidualFSQ([5, 5, 5], num_stages=4, quantize_dropout=True, seed=7).train()
    b = ResidualFSQ([5, 5, 5], num_stages=4, quantize_dropout=True, seed=7).train()
    assert [a.num_active_stages() for _ in range(20)] == [b.num_active_stages() for _ in range(20)]
    # and a restored counter resumes the same sequence
    c = ResidualFSQ([5, 5, 5], num_stages=4, quantize_dropout=True, seed=7).train()
    c.load_state_dict(a.state_dict())
    assert [a.num_active_stages() for _ in range(5)] == [c.num_active_stages() for _ in range(5)]


def test_zero_index_decodes_to_zero():
    for levels in ([8, 6, 5], [7, 5, 5]):
        rfsq = ResidualFSQ(levels, num_stages=2)
        zero = torch.full((1, 2, 1), rfsq.zero_index)
        assert torch.equal(rfsq.decode_indices(zero), torch.zeros(1, 3, 1))


def test_errors():
    with pytest.raises(ValueError, match="num_stages"):
        ResidualFSQ([8, 5, 5, 5], num_stages=0)
    with pytest.raises(ValueError, match="zero code"):
        ResidualFSQ([6, 5, 5], num_stages=2, symmetric=True, quantize_dropout=True)
    rfsq = ResidualFSQ([8, 5, 5, 5], num_stages=2)
    with pytest.raises(ValueError, match="S' <= 2"):
        rfsq.decode_indices(torch.zeros(1, 3, 4, dtype=torch.long))


def test_low_precision_under_autocast():
    rfsq = ResidualFSQ([8, 5, 5, 5], num_stages=3, in_channels=16)
    z = torch.randn(2, 16, 4, 4).bfloat16()
    ref = rfsq(z.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rfsq(z)
    assert torch.equal(out.indices, ref.indices)
