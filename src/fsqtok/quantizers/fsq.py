"""Finite Scalar Quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of ``d = len(levels)`` channels is bounded with ``tanh`` and rounded to one of
``levels[i]`` values. The product of those grids is an implicit codebook of
``prod(levels)`` codes: no codebook parameters, no codebook loss, nothing to collapse.
Gradients pass straight through the rounding.

The paper's reference (appendix A.1) computes, per channel with ``L`` levels::

    half_l = (L - 1) * (1 + eps) / 2
    offset = 0.5 if L is even else 0.0
    shift  = atanh(offset / half_l)
    bound(z)    = tanh(z + shift) * half_l - offset
    quantize(z) = round_ste(bound(z)) / (L // 2)

Two choices differ from the printed reference, on purpose:

* ``shift`` uses ``atanh``; the reference's ``tan`` is a typo (``atanh`` makes ``bound(0) = 0``).
* ``half_l`` uses ``(1 + eps)`` where the paper prints ``(1 - eps)``. With ``(1 - eps)`` and
  ``L = 2``, ``offset / half_l > 1`` and ``shift`` is NaN; it also narrows the outermost bins.
  ``(1 + eps)`` keeps ``shift`` finite for every ``L`` and lets a saturated ``tanh`` reach the
  outermost codes. Rounding can never leave the grid as long as ``eps * (L - 1) < 1``, which
  the constructor checks.

Each channel's rounded value maps to a *digit* ``d = round(bound(z)) + L // 2`` in
``[0, L)``; indices are the mixed-radix number ``sum_i d_i * basis_i`` with ``basis = [1, L0, L0*L1, ...]`` (first channel least significant),
packed in int64 arithmetic. Everything runs in float32 with autocast off.

Length: about 400 lines, over the ~300 guideline, because the paper's last-axis API
(``bound``/``quantize``/``codes_to_indices``/...), the conv-feature ``forward`` and the level
validation share one set of precomputed constants; splitting them would pass those constants around.

``symmetric=True`` selects the symmetric grid of arXiv 2411.19842: ``L`` points evenly spaced in
``[-1, 1]`` (``-1, -1 + 2/(L-1), ..., 1``), which also makes ``L = 2`` (a sign bit) meaningful.

``variant="printed"`` computes the bound exactly as printed in the paper's appendix:
``half_l = (L - 1) * (1 - eps) / 2`` and ``shift = tan(offset / half_l)``. NVIDIA NeMo's audio
codecs (``FiniteScalarQuantizer``) were trained with it, so their ports must use it: with fsqtok's
default formula about one token in 200 of a NeMo codec comes out different. The grid, the digits and
the index packing are the same in both variants.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from .base import (ChannelProjection, NonFiniteLatentError, QuantizerOutput, all_finite, channels_first,
                   check_channels, fp32_region, restore_layout)

INT64_MAX = 2**63 - 1
VARIANTS = ("fsqtok", "printed")  # how bound() is computed; see the module docstring


class _Consts(NamedTuple):
    """Per-channel float32 constants, shape ``(d,)``, on one device.

    ``tanh(x) = 2 * sigmoid(2x) - 1``, and the CPU kernel of ``sigmoid`` is several times
    faster than that of ``tanh``, so the hot path works with ``s = sigmoid(2 (z + shift))``:
    ``bound(z) = s * 2 half_l - half_l - offset``.
    """

    two_shift: Tensor | None  # 2 * shift; None when every shift is 0
    s_scale: Tensor  # 2 * half_l
    s_bias: Tensor  # added to s * s_scale before rounding, so that round() gives q
    bound_bias: Tensor  # -half_l - offset: s * s_scale + bound_bias = bound(z)
    inv_half_width: Tensor  # normalized code = q * inv_half_width (+ code_bias)
    code_bias: Tensor | None  # symmetric grid only: -1, since q counts from 0 there
    grad_gain: Tensor  # dcode/dz = grad_gain * s * (1 - s)
    center: Tensor | None  # symmetric grid only: q of the zero point, (L - 1) / 2
    half_width: Tensor  # L // 2, or (L - 1) / 2 on the symmetric grid
    q_min: Tensor  # smallest rounded value: -(L // 2), or 0 on the symmetric grid
    q_max: Tensor  # largest rounded value: (L - 1) // 2, or L - 1 on the symmetric grid
    levels: Tensor  # int64 (d,)
    basis: Tensor  # int64 (d,) mixed-radix place values
    index_offset: int  # sum(digit_of(q=0) * basis): turns packed rounded values into indices


class _BoundRound(torch.autograd.Function):
    """Fused bound + round with a straight-through gradient.

    Forward: ``s = sigmoid(2 (z + shift))`` (so ``tanh(z + shift) = 2s - 1``),
    ``q = round(s * s_scale + s_bias)``, ``code = q * inv_half_width (+ code_bias)``.
    On the paper's grid ``q = round(bound(z))`` and ``code = q / (L // 2)``.
    Backward passes the gradient straight through the rounding:
    ``dcode/dz = half_l / half_width * (1 - tanh^2) = grad_gain * s * (1 - s)``.
    One Function keeps a single saved tensor and avoids the
    ``x + (round(x) - x).detach()`` detour.
    """

    @staticmethod
    def forward(ctx, z: Tensor, two_shift: Tensor | None, s_scale: Tensor, s_bias: Tensor,
                inv_half_width: Tensor, code_bias: Tensor | None, grad_gain: Tensor,
                want_error: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        s = (torch.add(two_shift, z, alpha=2.0) if two_shift is not None else z * 2.0).sigmoid_()
        b = (s * s_scale).add_(s_bias)
        q = torch.round(b) if want_error else b.round_()
        error = b.sub_(q) if want_error else None  # rounding error, for residual stages
        codes = q * inv_half_width
        if code_bias is not None:
            codes.add_(code_bias)
        ctx.save_for_backward(s, grad_gain)
        ctx.mark_non_differentiable(q, *([error] if want_error else []))
        return codes, q, error

    @staticmethod
    def backward(ctx, grad_codes: Tensor, *_: Tensor):  # q and the rounding error carry no gradient
        s, grad_gain = ctx.saved_tensors
        return (grad_codes * grad_gain).mul_(s - s * s), None, None, None, None, None, None, None


def _axis_view(x: Tensor, ndim: int, axis: int) -> Tensor:
    """View a ``(d,)`` tensor so it broadcasts along ``axis`` of an ``ndim``-dim tensor."""
    axis = axis % ndim
    return x.view(-1, *([1] * (ndim - axis - 1)))


class FSQ(nn.Module):
    """Finite Scalar Quantizer.

    Args:
        levels: number of values per channel, e.g. ``[8, 5, 5, 5]`` (codebook 1000). Each >= 2;
            ``2`` needs ``symmetric=True``. The paper recommends every level >= 5.
        in_channels: channels of the features given to :meth:`forward`. When it differs from
            ``len(levels)``, a linear projection maps in and back out (the output keeps
            ``in_channels``). Defaults to ``len(levels)`` (no projection).
        eps: margin of the ``tanh`` bound (see module docstring); needs ``eps * (L - 1) < 1``.
        symmetric: use the symmetric grid ``linspace(-1, 1, L)`` (arXiv 2411.19842) instead of
            the paper's centred integer grid.
        variant: ``"fsqtok"`` (default: ``(1 + eps)`` scale, ``atanh`` shift) or ``"printed"`` (the
            paper's printed formula, ``(1 - eps)`` and ``tan``, as NVIDIA NeMo's codecs use it);
            see the module docstring. ``"printed"`` needs the paper's grid (``symmetric=False``).
        channel_last: :meth:`forward` takes ``(B, *spatial, C)`` instead of ``(B, C, *spatial)``.

    The methods :meth:`bound`, :meth:`quantize`, :meth:`codes_to_indices` and
    :meth:`indices_to_codes` act on the **last axis** (of size ``len(levels)``), as in the
    paper's code. :meth:`forward` and :meth:`decode_indices` act on conv features.
    """

    def __init__(
        self,
        levels: Sequence[int],
        in_channels: int | None = None,
        *,
        eps: float = 1e-3,
        symmetric: bool = False,
        channel_last: bool = False,
        variant: str = "fsqtok",
    ) -> None:
        super().__init__()
        self.levels = validate_levels(levels, eps=eps, symmetric=symmetric)
        if variant not in VARIANTS:
            raise ValueError(f"FSQ: variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "printed" and symmetric:
            raise ValueError("FSQ: variant='printed' is defined on the paper's grid; pass symmetric=False")
        self.variant = variant
        self.dim = len(self.levels)
        self.in_channels = self.dim if in_channels is None else int(in_channels)
        if self.in_channels < 1:
            raise ValueError(f"FSQ: in_channels must be >= 1, got {in_channels}")
        self.eps = float(eps)
        self.symmetric = bool(symmetric)
        self.channel_last = bool(channel_last)
        self.codebook_size = math.prod(self.levels)
        self.project_in = ChannelProjection(self.in_channels, self.dim)
        self.project_out = ChannelProjection(self.dim, self.in_channels)
        # computed here, not on first use, so that a torch.compile'd forward traces without a graph break
        self._host_consts = self._make_host_consts()
        self._q_range = list(zip(  # (q_min, q_max) per channel, as Python floats
            self._host_consts.q_min.tolist(), self._host_consts.q_max.tolist()))
        self._consts_cache: dict[torch.device, _Consts] = {}

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, in_channels={self.in_channels}, codebook_size={self.codebook_size}, "
                f"symmetric={self.symmetric}, channel_last={self.channel_last}"
                + (f", variant={self.variant!r}" if self.variant != "fsqtok" else ""))

    # ------------------------------------------------------------------ constants
    def _make_host_consts(self) -> _Consts:
        """The constants on the CPU, computed in float64 and stored as float32."""
        L = torch.tensor(self.levels, dtype=torch.float64)
        if self.symmetric:
            half_l = (L - 1) / 2
            offset = torch.zeros_like(L)
            half_width = (L - 1) / 2
        else:
            printed = self.variant == "printed"
            half_l = (L - 1) * ((1 - self.eps) if printed else (1 + self.eps)) / 2
            offset = (L % 2 == 0).double() * 0.5
            half_width = torch.floor(L / 2)
        shift = torch.tan(offset / half_l) if self.variant == "printed" else torch.atanh(offset / half_l)
        basis = torch.tensor([math.prod(self.levels[:i]) for i in range(self.dim)], dtype=torch.int64)
        # q is round(bound) on the paper's grid and the digit itself on the symmetric one
        round_bias = half_width if self.symmetric else torch.zeros_like(L)
        q0_digit = torch.zeros_like(L) if self.symmetric else half_width  # digit of q = 0
        return _Consts(
            two_shift=(2 * shift).float() if bool((shift != 0).any()) else None,
            s_scale=(2 * half_l).float(),
            s_bias=(round_bias - half_l - offset).float(),
            bound_bias=(-half_l - offset).float(),
            inv_half_width=(1 / half_width).float(),
            code_bias=torch.full_like(L, -1.0).float() if self.symmetric else None,
            grad_gain=(4 * half_l / half_width).float(),
            center=half_width.float() if self.symmetric else None,
            half_width=half_width.float(),
            q_min=(-q0_digit).float(),
            q_max=(L - 1 - q0_digit).float(),
            levels=torch.tensor(self.levels, dtype=torch.int64),
            basis=basis,
            index_offset=int((q0_digit.long() * basis).sum()),
        )

    def _consts(self, device: torch.device) -> _Consts:
        """Constants on ``device``. They are plain float32 tensors, never module buffers, so
        ``module.to(torch.bfloat16)`` cannot degrade them."""
        c = self._consts_cache.get(device)
        if c is None:
            c = _Consts(*(t.to(device) if isinstance(t, Tensor) else t for t in self._host_consts))
            self._consts_cache[device] = c
        return c

    # ------------------------------------------------------------------ last-axis API (paper)
    def _round(self, z: Tensor, axis: int, want_error: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(codes, q, error)`` of float32 ``z`` along ``axis``: normalized codes carrying the
        straight-through gradient, the rounded values ``q`` that :meth:`_pack` packs, and (when
        ``want_error``) the rounding error ``bound(z) - round(bound(z))`` for residual stages."""
        c = self._consts(z.device)
        view = lambda t: None if t is None else _axis_view(t, z.ndim, axis)  # noqa: E731
        return _BoundRound.apply(z, view(c.two_shift), view(c.s_scale), view(c.s_bias),
                                 view(c.inv_half_width), view(c.code_bias), view(c.grad_gain), want_error)

    def _snap(self, residual: Tensor, gain_in: Tensor, gain_out: Tensor, bias_out: Tensor | None) -> tuple[Tensor, Tensor]:
        """Snap channel-first ``residual`` to a scaled copy of the grid (no ``tanh``, clamped, no
        gradient): how residual stages quantize what is left over.

        ``q = clamp(round(residual * gain_in (+ center)))`` and ``codes = q * gain_out (+ bias_out)``,
        with ``(d, 1, ...)``-broadcastable gains. Returns ``(codes, q)``.
        """
        c = self._consts(residual.device)
        view = lambda t: _axis_view(t, residual.ndim, 1)  # noqa: E731
        q = residual * gain_in
        if c.center is not None:
            q.add_(view(c.center))
        q.round_()
        for i, (lo, hi) in enumerate(self._q_range):  # scalar clamps: far faster than broadcast ones on CPU
            q.select(1, i).clamp_(lo, hi)
        codes = q * gain_out
        return (codes.add_(bias_out) if bias_out is not None else codes), q

    def _bound(self, z: Tensor, axis: int) -> Tensor:
        """``bound(z)`` along ``axis``, computed exactly as the hot path computes it."""
        c = self._consts(z.device)
        view = lambda t: _axis_view(t, z.ndim, axis)  # noqa: E731
        s = torch.sigmoid(torch.add(view(c.two_shift), z, alpha=2.0) if c.two_shift is not None else z * 2.0)
        return s * view(c.s_scale) + view(c.bound_bias)

    def bound(self, z: Tensor) -> Tensor:
        """Bound ``z (..., d)`` so that rounding lands on the grid: ``tanh(z + shift) * half_l - offset``.

        Returns float32 ``(..., d)``; rounding it gives integers in ``[-(L//2), (L-1)//2]``
        (symmetric grid: half-integers in ``[-(L-1)/2, (L-1)/2]``).
        """
        self._check_last(z)
        with fp32_region(z.device.type):
            return self._bound(z.float(), -1)

    def quantize(self, z: Tensor) -> Tensor:
        """Quantize ``z (..., d)`` to normalized codes in ``[-1, 1]`` (straight-through gradient)."""
        self._check_last(z)
        with fp32_region(z.device.type):
            return self._round(z.float(), -1)[0]

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Normalized codes ``(..., d)`` -> int64 indices ``(...)``."""
        self._check_last(codes)
        return self._pack(self._codes_to_q(codes), -1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """int64 indices ``(...)`` -> normalized float32 codes ``(..., d)``."""
        return self._unpack_codes(indices, -1)

    @property
    def codebook(self) -> Tensor:
        """The implicit codebook, float32 ``(codebook_size, d)``; built on first use, not stored."""
        cached = getattr(self, "_codebook", None)
        if cached is None:
            if self.codebook_size > 2**24:
                raise ValueError(f"codebook of {self.codebook_size} codes is too large to materialize")
            cached = self.indices_to_codes(torch.arange(self.codebook_size))
            self._codebook = cached
        return cached

    # ------------------------------------------------------------------ digits <-> indices
    def _codes_to_q(self, codes: Tensor) -> Tensor:
        """Normalized codes ``(..., d)`` -> rounded values ``q`` (float, integral), validated."""
        c = self._consts(codes.device)
        q = torch.round(codes.float() * c.half_width + (c.center if c.center is not None else 0))
        digits = q if self.symmetric else q + c.half_width
        if digits.numel() and not bool(((digits >= 0) & (digits < c.levels)).all()):  # NaN fails both tests
            if not bool(all_finite(digits)):
                raise NonFiniteLatentError("FSQ: codes hold NaN or infinite values, so they have no valid indices")
            raise ValueError("FSQ: codes lie outside [-1, 1]; codes_to_indices takes codes from quantize()")
        return q

    def _pack(self, q: Tensor, axis: int, out: Tensor | None = None) -> Tensor:
        """Rounded values ``q`` (integral floats) along ``axis`` -> int64 mixed-radix indices.

        Integer arithmetic throughout: each channel's value is converted to an integer and
        added with its place value, so no float rounding can corrupt an index. Codebooks
        below 2**31 accumulate in int32 (cheaper on the CPU), then widen to int64. Shifting
        every channel to its digit in ``[0, L)`` is folded into one constant added at the end.
        ``out``, if given, is an int64 tensor to write the indices into.
        """
        c = self._consts(q.device)
        itype = torch.int32 if self.codebook_size < 2**31 else torch.int64
        basis = c.basis.tolist()
        acc = q.select(axis, 0).to(itype)
        for i in range(1, self.dim):
            acc.add_(q.select(axis, i).to(itype), alpha=basis[i])
        if c.index_offset:
            acc.add_(c.index_offset)
        return acc.long() if out is None else out.copy_(acc)

    def _unpack_digits(self, indices: Tensor, axis: int) -> Tensor:
        """int64 indices ``(B, *S)`` -> int64 digits in ``[0, L)`` with a new channel axis at ``axis``."""
        if indices.is_floating_point() or indices.is_complex():
            raise TypeError(f"FSQ: indices must be an integer tensor, got {indices.dtype}")
        indices = indices.long()
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(
                f"FSQ: indices must lie in [0, {self.codebook_size}), got min {int(indices.min())}, "
                f"max {int(indices.max())}"
            )
        c = self._consts(indices.device)
        idx = indices.unsqueeze(axis)
        return torch.div(idx, _axis_view(c.basis, idx.ndim, axis), rounding_mode="floor") % _axis_view(
            c.levels, idx.ndim, axis)

    def _unpack_codes(self, indices: Tensor, axis: int, gain: Tensor | None = None,
                      bias: Tensor | None = None) -> Tensor:
        """int64 indices -> normalized float32 codes ``q * gain (+ bias)``, with the same float ops
        as the forward pass, so decoded codes are bit-identical to those :meth:`forward` made.
        ``gain``/``bias`` default to this grid's; residual stages pass their scaled ones."""
        c = self._consts(indices.device)
        digits = self._unpack_digits(indices, axis).float()
        view = lambda t: _axis_view(t, digits.ndim, axis)  # noqa: E731
        gain = view(c.inv_half_width) if gain is None else gain
        if c.code_bias is not None:  # symmetric grid: q is the digit
            return digits * gain + (view(c.code_bias) if bias is None else bias)
        return (digits - view(c.half_width)) * gain

    # ------------------------------------------------------------------ conv-feature API
    def forward(self, z: Tensor) -> QuantizerOutput:
        """Quantize conv features.

        Args:
            z: ``(B, in_channels, *spatial)`` (or ``(B, *spatial, in_channels)`` with
                ``channel_last``), any float dtype.
        Returns:
            :class:`QuantizerOutput` with ``z_q`` of ``z``'s shape and dtype, int64
            ``indices (B, *spatial)`` and ``loss == 0``. NaN or inf in the (projected) latents
            make reading ``indices`` raise :class:`NonFiniteLatentError` (checked lazily, see there).
        """
        check_channels(z, self.in_channels, self.channel_last, "FSQ")
        with fp32_region(z.device.type):
            h = self.project_in(channels_first(z.float(), self.channel_last))
            codes, q, _ = self._round(h, 1)
            indices = self._pack(q, 1)
            z_q = restore_layout(self.project_out(codes), self.channel_last).to(z.dtype)
        return QuantizerOutput(z_q=z_q, indices=indices, loss=z.new_zeros((), dtype=torch.float32),
                               codebook_size=self.codebook_size, finite=all_finite(h), source="FSQ")

    def decode_indices(self, indices: Tensor) -> Tensor:
        """int64 ``(B, *spatial)`` indices -> float32 ``z_q (B, in_channels, *spatial)`` (or channel-last)."""
        with fp32_region(indices.device.type):
            return restore_layout(self.project_out(self._unpack_codes(indices, 1)), self.channel_last)

    def _check_last(self, z: Tensor) -> None:
        if z.ndim < 1 or z.shape[-1] != self.dim:
            raise ValueError(f"FSQ: expected last axis of size {self.dim} (len(levels)), got shape {tuple(z.shape)}")


def validate_levels(levels: Sequence[int], *, eps: float, symmetric: bool) -> list[int]:
    """Check an FSQ level list and return it as ``list[int]``; warn about levels below 5."""
    try:
        levels = list(levels)
    except TypeError:
        raise TypeError(f"FSQ: levels must be a sequence of ints, got {levels!r}") from None
    if not levels:
        raise ValueError("FSQ: levels must not be empty, e.g. levels=[8, 5, 5, 5]")
    for i, L in enumerate(levels):
        if isinstance(L, bool) or not isinstance(L, int) and not (hasattr(L, "__index__")):
            raise TypeError(f"FSQ: levels[{i}]={L!r} is not an int")
        L = int(L)
        if L < 2:
            raise ValueError(f"FSQ: levels[{i}]={L} must be >= 2 (a channel with one level carries no information)")
        if L == 2 and not symmetric:
            raise ValueError(
                f"FSQ: levels[{i}]=2 has no centred grid; pass symmetric=True (the symmetric FSQ of "
                "arXiv 2411.19842) or use a level >= 3"
            )
        if not symmetric and eps * (L - 1) >= 1:
            raise ValueError(f"FSQ: eps={eps} is too large for levels[{i}]={L}; need eps * (L - 1) < 1")
    levels = [int(L) for L in levels]
    if not 0 <= eps < 1:
        raise ValueError(f"FSQ: eps must be in [0, 1), got {eps}")
    if math.prod(levels) > INT64_MAX:
        raise ValueError(f"FSQ: codebook size prod({levels}) exceeds what int64 indices can hold; use fewer levels")
    if any(L < 5 for L in levels):
        warnings.warn(
            f"FSQ levels {levels} include values below 5, which the FSQ paper found to perform worse",
            stacklevel=3,
        )
    return levels
