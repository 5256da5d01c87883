"""FSQ: the paper's math, pinned exactly."""

import copy
import itertools
import math
import warnings

import pytest
import torch

from fsqtok.quantizers import FSQ, NonFiniteLatentError

PAPER_LEVELS = [[8, 6, 5], [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 8, 8, 6, 5], [8, 8, 8, 5, 5, 5]]


def grid(L: int, symmetric: bool = False) -> torch.Tensor:
    """The normalized values one channel with L levels may take."""
    if symmetric:
        return torch.linspace(-1, 1, L)
    hw = L // 2
    return torch.arange(-hw, L - hw, dtype=torch.float32) / hw


@pytest.mark.parametrize("levels", PAPER_LEVELS)
def test_indices_codes_round_trip_over_whole_codebook(levels):
    fsq = FSQ(levels)
    assert fsq.codebook_size == math.prod(levels)
    all_idx = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(all_idx)
    assert codes.shape == (fsq.codebook_size, len(levels))
    assert torch.equal(fsq.codes_to_indices(codes), all_idx)
    # the implicit codebook is the same table, and every row is distinct
    assert torch.equal(fsq.codebook, codes)
    assert torch.unique(codes, dim=0).shape[0] == fsq.codebook_size


@pytest.mark.parametrize("levels", PAPER_LEVELS)
def test_basis_first_dimension_least_significant(levels):
    fsq = FSQ(levels)
    codes = fsq.indices_to_codes(torch.tensor([0, 1, levels[0]]))
    lo = grid(levels[0])
    assert torch.equal(codes[0], torch.tensor([grid(L)[0] for L in levels]))
    assert codes[1, 0] == lo[1] and torch.equal(codes[1, 1:], codes[0, 1:])
    assert codes[2, 0] == lo[0] and codes[2, 1] == grid(levels[1])[1]


@pytest.mark.filterwarnings("ignore:FSQ levels")
@pytest.mark.parametrize("symmetric,levels", [(False, [8, 5, 5, 5]), (False, [8, 6, 5]), (True, [2, 4, 5]), (True, [3, 7])])
def test_every_quantized_code_lies_on_the_grid(symmetric, levels):
    fsq = FSQ(levels, symmetric=symmetric)
    z = torch.randn(4096, len(levels)) * 4
    z[:8] = torch.tensor([1e4, -1e4]).repeat(4)[:, None]  # saturated tanh reaches the extremes
    codes = fsq.quantize(z)
    for i, L in enumerate(levels):
        values = torch.unique(codes[:, i])
        # on the implicit codebook's grid, which is the intended grid up to float rounding
        assert torch.isin(values, torch.unique(fsq.codebook[:, i])).all(), (i, values)
        assert torch.allclose(torch.unique(fsq.codebook[:, i]), grid(L, symmetric), atol=1e-6)
        assert values.numel() == L, f"channel {i} reached {values.numel()} of {L} levels"


def test_bound_is_zero_at_zero_and_shift_uses_atanh():
    fsq = FSQ([8, 6, 5, 7])
    assert torch.allclose(fsq.bound(torch.zeros(4)), torch.zeros(4), atol=1e-6)
    # quantize(0) is the zero code on the paper's grid
    assert torch.equal(fsq.quantize(torch.zeros(3, 4)), torch.zeros(3, 4))


def test_quantize_matches_reference_formula():
    # appendix A.1 of the paper (atanh for the typo'd tan), in float32 as the reference runs
    levels = torch.tensor([8, 6, 5, 7], dtype=torch.float64)
    eps = 1e-3
    fsq = FSQ(levels.long().tolist(), eps=eps)
    z = torch.randn(1000, 4) * 3
    half_l = ((levels - 1) * (1 + eps) / 2).float()
    offset = torch.where(levels % 2 == 0, 0.5, 0.0).float()
    shift = torch.atanh(offset.double() / half_l.double()).float()
    bounded = torch.tanh(z + shift) * half_l - offset
    ref = torch.round(bounded) / torch.div(levels, 2, rounding_mode="floor").float()
    # tanh is evaluated as 2 * sigmoid(2x) - 1 (a faster kernel): the two agree to float
    # rounding, so only values within 1e-5 of a rounding boundary may round differently
    clear = ((bounded - bounded.floor() - 0.5).abs() > 1e-5).all(-1)
    assert clear.sum() > 990
    assert torch.equal(fsq.quantize(z)[clear], ref[clear])


def test_straight_through_gradient():
    fsq = FSQ([8, 5, 5, 5])
    z = torch.randn(64, 4, requires_grad=True)
    w = torch.randn(64, 4)
    (fsq.quantize(z) * w).sum().backward()
    # straight-through: d quantize / dz == d bound / dz / (L // 2)
    z2 = z.detach().clone().requires_grad_(True)
    half_width = torch.tensor([4.0, 2.0, 2.0, 2.0])
    (fsq.bound(z2) / half_width * w).sum().backward()
    assert torch.allclose(z.grad, z2.grad, rtol=1e-5, atol=1e-7)
    assert (z.grad != 0).all()


def test_forward_gradient_reaches_projection_and_input():
    fsq = FSQ([8, 5, 5, 5], in_channels=16)
    z = torch.randn(2, 16, 4, 4, requires_grad=True)
    out = fsq(z)
    out.z_q.square().sum().backward()
    assert z.grad.abs().sum() > 0
    assert fsq.project_in.linear.weight.grad.abs().sum() > 0
    assert out.loss.item() == 0.0


def test_torch_compile_fullgraph_matches_eager():
    """A freshly built FSQ compiles as one graph (nothing is set up lazily on the first call)
    and gives eager's indices, codes and gradient exactly."""
    torch.manual_seed(0)
    fsq = FSQ([8, 5, 5, 5], in_channels=8)
    compiled = torch.compile(copy.deepcopy(fsq), fullgraph=True)
    z = torch.randn(2, 8, 6, 6) * 2
    z_eager, z_comp = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = compiled(z_comp)
    ref = fsq(z_eager)
    assert torch.equal(out.indices, ref.indices)
    assert torch.equal(out.z_q, ref.z_q)
    out.z_q.square().sum().backward()
    ref.z_q.square().sum().backward()
    assert torch.allclose(z_comp.grad, z_eager.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_gives_fp32_indices(dtype):
    fsq = FSQ([8, 8, 8, 5, 5, 5], in_channels=32)
    z = (torch.randn(4, 32, 8, 8) * 2).to(dtype)
    ref = fsq(z.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fsq(z)
    assert out.indices.dtype == torch.int64
    assert torch.equal(out.indices, ref.indices)
    assert out.z_q.dtype == dtype
    assert int(out.indices.max()) < fsq.codebook_size


def test_module_to_bf16_keeps_exact_quantization():
    fsq = FSQ([8, 6, 5], in_channels=8)
    z = torch.randn(2, 8, 5, 5)
    ref = fsq(z).indices
    fsq_bf16 = fsq.to(torch.bfloat16)
    z_bf = z.to(torch.bfloat16)
    ref_bf = FSQ([8, 6, 5], in_channels=8)
    ref_bf.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in fsq.state_dict().items()})
    assert torch.equal(fsq_bf16(z_bf).indices, ref_bf(z_bf.float()).indices)
    assert ref.shape == (2, 5, 5)


@pytest.mark.parametrize("in_channels", [None, 12])
def test_channel_first_equals_channel_last(in_channels):
    torch.manual_seed(0)
    first = FSQ([8, 5, 5, 5], in_channels=in_channels)
    last = FSQ([8, 5, 5, 5], in_channels=in_channels, channel_last=True)
    last.load_state_dict(first.state_dict())
    c = first.in_channels
    z = torch.randn(2, c, 3, 5, 7)
    a = first(z)
    b = last(z.movedim(1, -1))
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.z_q.movedim(1, -1), b.z_q, atol=1e-6)
    assert torch.allclose(first.decode_indices(a.indices).movedim(1, -1), last.decode_indices(b.indices), atol=1e-6)


def test_forward_decode_indices_consistent_and_shapes():
    fsq = FSQ([7, 5, 5, 5, 5])
    z = torch.randn(3, 5, 4, 6)
    out = fsq(z)
    assert out.indices.shape == (3, 4, 6)
    assert out.z_q.shape == z.shape
    assert torch.equal(fsq.decode_indices(out.indices), out.z_q)
    # the indices are those of codes_to_indices on the channel-last codes
    assert torch.equal(fsq.codes_to_indices(out.z_q.movedim(1, -1)), out.indices)


def test_indices_exact_beyond_float_precision():
    # 10^18 codes: float64 cannot hold every index (> 2^53); int64 packing must be exact
    levels = [1000] * 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fsq = FSQ(levels, eps=1e-4)
    idx = torch.tensor([0, 1, 2**53 + 1, 10**18 - 1, 123456789012345678])
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx)), idx)


@pytest.mark.filterwarnings("ignore:FSQ levels")
def test_symmetric_levels_two_is_a_sign_bit():
    fsq = FSQ([2, 2, 2], symmetric=True)
    assert fsq.codebook_size == 8
    codes = fsq.quantize(torch.tensor([[-3.0, 0.5, 2.0]]))
    assert torch.equal(codes, torch.tensor([[-1.0, 1.0, 1.0]]))
    assert torch.equal(fsq.codes_to_indices(fsq.codebook), torch.arange(8))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(levels=[8, 1]), r"levels\[1\]=1 must be >= 2"),
        (dict(levels=[2, 5]), r"levels\[0\]=2 .*symmetric=True"),
        (dict(levels=[]), "must not be empty"),
        (dict(levels=[8, 5.5]), "is not an int"),
        (dict(levels=[2**32] * 2 + [3], eps=1e-12), "exceeds what int64"),
        (dict(levels=[8, 5], eps=0.2), "eps=0.2 is too large"),
    ],
)
def test_invalid_levels_are_rejected_clearly(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FSQ(**kwargs)


def test_small_levels_warn():
    with pytest.warns(UserWarning, match="below 5"):
        FSQ([4, 5, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FSQ([8, 5, 5, 5])


def test_bad_inputs_are_rejected():
    fsq = FSQ([8, 5, 5, 5])
    with pytest.raises(ValueError, match=r"C=4"):
        fsq(torch.randn(2, 3, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        fsq(torch.ones(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        fsq.decode_indices(torch.tensor([[1000]]))
    with pytest.raises(TypeError, match="integer"):
        fsq.decode_indices(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match="outside"):
        fsq.codes_to_indices(torch.full((1, 4), 3.0))


def test_all_levels_products_small_exhaustive():
    # every combination of small level lists round-trips, both grids
    for levels in itertools.product([3, 4, 5, 6], repeat=2):
        for symmetric in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fsq = FSQ(list(levels), symmetric=symmetric)
            idx = torch.arange(fsq.codebook_size)
            assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(idx)), idx)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("in_channels", [None, 8])
def test_non_finite_latents_never_become_indices(bad, in_channels):
    """Issue 10 item 1: NaN rounded to the int32 minimum (index -2147483148); +-inf saturated to
    a code as if it were a latent. Reading the indices raises NonFiniteLatentError instead."""
    fsq = FSQ([8, 5, 5, 5], in_channels=in_channels)
    z = torch.zeros(2, fsq.in_channels, 3, 3)
    z[1, 0, 2, 1] = bad
    out = fsq(z)
    assert out.finite.shape == () and out.finite.dtype == torch.bool  # computed on the device, read lazily
    with pytest.raises(NonFiniteLatentError, match=r"^FSQ: the latents hold NaN or infinite values[^\n]*$"):
        out.indices
    with pytest.raises(NonFiniteLatentError):
        out.usage()
    assert isinstance(NonFiniteLatentError("x"), ValueError)
    z[1, 0, 2, 1] = 0.0
    assert torch.equal(fsq(z).indices, torch.full((2, 3, 3), fsq(z[:1]).indices[0, 0, 0].item()))


def test_codes_to_indices_rejects_non_finite_codes():
    fsq = FSQ([8, 5, 5, 5])
    codes = fsq.indices_to_codes(torch.tensor([7, 999]))
    codes[1, 2] = float("nan")
    with pytest.raises(NonFiniteLatentError, match="NaN"):
        fsq.codes_to_indices(codes)
    codes[1, 2] = 2.0
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]"):
        fsq.codes_to_indices(codes)


def test_projection_is_a_linear_map_on_channels():
    torch.manual_seed(0)
    fsq = FSQ([8, 5, 5, 5], in_channels=16)
    z = torch.randn(2, 16, 3, 5)
    h = fsq.project_in(z)
    expected = torch.nn.functional.linear(z.movedim(1, -1), fsq.project_in.linear.weight,
                                          fsq.project_in.linear.bias).movedim(-1, 1)
    assert h.shape == (2, 4, 3, 5) and torch.allclose(h, expected, atol=1e-5)
    assert fsq.project_out(torch.randn(7, 4)).shape == (7, 16)  # no spatial axes


# --------------------------------------------------------------------------- variant="printed" (NeMo's bound)


def printed_bound(z: torch.Tensor, levels: list[int], eps: float = 1e-3) -> torch.Tensor:
    """The paper's printed formula, written out independently: ``(L-1)/2 (1-eps) tanh(z + tan(o/s)) - o``."""
    L = torch.tensor(levels, dtype=torch.float64)
    scale = (L - 1) / 2 * (1 - eps)
    offset = (L % 2 == 0).double() * 0.5
    return (scale * torch.tanh(z.double() + torch.tan(offset / scale)) - offset).float()


@pytest.mark.parametrize("levels", [[8, 7, 6, 6], [8, 5, 5, 5]])
def test_printed_variant_bounds_with_the_printed_formula(levels):
    z = torch.randn(4096, len(levels), generator=torch.Generator().manual_seed(0)) * 2
    fsq = FSQ(levels, variant="printed")
    assert torch.allclose(fsq.bound(z), printed_bound(z, levels), atol=2e-6)
    # the default differs from it by up to eps * (L - 1) (scale) plus the shift: enough to move tokens
    assert (FSQ(levels).bound(z) - printed_bound(z, levels)).abs().max() > 1e-3
    # rounding the printed bound gives the printed variant's codes, packed as in the paper
    codes = fsq.quantize(z)
    expected = torch.round(printed_bound(z, levels)) / torch.tensor([L // 2 for L in levels])
    assert torch.equal(codes, expected)
    assert torch.equal(fsq.codes_to_indices(codes), FSQ(levels).codes_to_indices(codes))


def test_printed_variant_keeps_grid_and_packing():
    printed, default = FSQ([8, 7, 6, 6], variant="printed"), FSQ([8, 7, 6, 6])
    assert torch.equal(printed.codebook, default.codebook)
    z = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1)) * 3
    out = printed(z)
    assert torch.equal(printed.decode_indices(out.indices), out.z_q)
    assert "variant='printed'" in repr(printed) and "variant" not in repr(default)


@pytest.mark.parametrize("kwargs,match", [
    (dict(levels=[8, 5], variant="nemo"), r"variant must be one of \('fsqtok', 'printed'\), got 'nemo'"),
    (dict(levels=[5, 5], variant="printed", symmetric=True), "variant='printed' is defined on the paper's grid"),
])
def test_bad_variant_is_rejected_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FSQ(**kwargs)
