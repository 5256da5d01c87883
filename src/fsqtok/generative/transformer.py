"""A pre-norm transformer encoder stack, shared by the token models (MaskGIT; UViM's stage II can reuse it).

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`, so PyTorch picks
the fused kernel for the device (flash / memory-efficient on CUDA, the fused CPU kernel
otherwise). ``mask`` follows that function's convention (``True`` = may attend), so the same
block serves bidirectional (``mask=None``) and causal (``causal=True``) models. Dropout acts on
the residual branches only, not on the attention probabilities: attention-probability dropout
sends PyTorch to its unfused math attention (on CPU: extra bmm, softmax and mask passes).

**Inference fast path.** In eval mode with autograd off (``no_grad`` / ``inference_mode``), on
the CPU in float32 without autocast, every linear layer runs through oneDNN's fused linear
(``torch.ops.mkldnn._linear_pointwise``, the op Inductor emits for CPU linears): the MLP's
tanh-GELU and both residual additions run in the matmul's epilogue instead of separate passes
over memory (PyTorch's own tanh-GELU kernel costs half a matmul at these sizes). It equals the
plain path to float rounding (about 1e-6); training, autograd, autocast, other devices and dtypes,
and builds without that op take the plain path. The weights and ``state_dict`` are the same.

Within :func:`packed_weights` (MaskGIT's ``generate`` uses it), the fast path multiplies by
oneDNN-packed copies of the weights, packed on first use instead of inside every call.

``keep`` (int64 ``(B, m)`` positions) asks for the outputs at those positions only: the last block
then computes queries, attention output, MLP and the final norm for those rows alone (keys and
values still come from every position), ``(B, L, width) -> (B, m, width)``.
"""

from __future__ import annotations

import contextlib
import functools
from contextvars import ContextVar
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def _onednn_linear() -> bool:
    """Whether oneDNN's fused linear exists here and matches ``F.linear`` + tanh-GELU / + residual, with a packed
    weight too (checked once)."""
    x = torch.linspace(-2, 2, 24).view(3, 8)  # fixed values: the global random stream is not touched
    w, b, r = torch.linspace(-1, 1, 40).view(5, 8), torch.linspace(-0.5, 0.5, 5), torch.linspace(0, 1, 15).view(3, 5)
    try:
        with torch.no_grad():
            gelu = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w, 3), b, "gelu", [],
                                                      "tanh")
            add = torch.ops.mkldnn._linear_pointwise.binary(x, r, w, b, "add")
            ref = F.linear(x, w, b)
            return (torch.allclose(gelu, F.gelu(ref, approximate="tanh"), atol=1e-5)
                    and torch.allclose(add, ref + r, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def fused_inference(x: Tensor, module: nn.Module) -> bool:
    """Whether ``module`` applied to ``x`` takes the inference fast path (see the module docstring)."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu") and _onednn_linear())


_PACKED: ContextVar[dict[tuple, tuple[Tensor, Tensor]] | None] = ContextVar("fsqtok_packed_weights", default=None)


@contextlib.contextmanager
def packed_weights() -> Iterator[None]:
    """Inside, the fast path packs each weight it multiplies by for oneDNN once, on first use, and reuses the packed
    copy until exit (about 5% faster than packing inside every call). The weights must not change inside."""
    token = _PACKED.set({})
    try:
        yield
    finally:
        _PACKED.reset(token)


def _packed(weight: Tensor, x: Tensor) -> Tensor:
    """The packed copy of ``weight`` inside :func:`packed_weights` (made for ``x``'s row count), else ``weight``."""
    packs = _PACKED.get()
    if packs is None:
        return weight
    key = weight.data_ptr(), tuple(weight.shape), weight.stride()
    if key not in packs:  # the weight is kept with its copy, so its address cannot be reused inside
        packs[key] = weight, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), max(1, x.numel() // x.shape[-1]))
    return packs[key][1]


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None, fused: bool, *, gelu: bool = False,
            residual: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``, then tanh-GELU (``gelu``) or ``+ residual``; one oneDNN call when ``fused``
    (with the packed copy of ``weight`` inside :func:`packed_weights`)."""
    if fused:
        weight = _packed(weight, x)
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu" if gelu else "none", [],
                                                  "tanh" if gelu else "")
    y = F.linear(x, weight, bias)
    if gelu:
        y = F.gelu(y, approximate="tanh")
    return y if residual is None else residual + y


def _rows(x: Tensor, keep: Tensor) -> Tensor:
    """``x[b, keep[b, j]]``: ``(B, L, D)``, int64 ``(B, m)`` -> ``(B, m, D)``."""
    return x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection. ``(B, L, width) -> (B, L, width)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"Attention: width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False, keep: Tensor | None = None,
                residual: Tensor | None = None) -> Tensor:
        """``keep`` int64 ``(B, m)``: queries at those positions only -> ``(B, m, width)``; ``residual`` is added
        to the output (shaped like it)."""
        b, n, d = x.shape
        fused, w, bias, head = fused_inference(x, self), self.qkv.weight, self.qkv.bias, (self.heads, d // self.heads)
        if keep is None:
            q, k, v = _linear(x, w, bias, fused).view(b, n, 3, *head).permute(2, 0, 3, 1, 4)
        else:  # q from the kept rows only; k, v from every row (slices of the one qkv weight)
            q = _linear(_rows(x, keep), w[:d], bias[:d], fused).view(b, -1, *head).transpose(1, 2)
            k, v = _linear(x, w[d:], bias[d:], fused).view(b, n, 2, *head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return _linear(y.transpose(1, 2).reshape(b, -1, d), self.proj.weight, self.proj.bias, fused, residual=residual)


class Block(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``; GELU MLP of width ``mlp_ratio * width``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(round(mlp_ratio * width))
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False,
                keep: Tensor | None = None) -> Tensor:
        """``(B, L, width) -> (B, L, width)``, or ``(B, m, width)`` at the positions ``keep`` ``(B, m)``."""
        out = x if keep is None else _rows(x, keep)
        if fused_inference(x, self):
            out = self.attn(self.norm1(x), mask, causal, keep, residual=out)
            fc1, fc2 = self.mlp[0], self.mlp[2]
            hidden = _linear(self.norm2(out), fc1.weight, fc1.bias, True, gelu=True)
            return _linear(hidden, fc2.weight, fc2.bias, True, residual=out)
        out = out + self.drop(self.attn(self.norm1(x), mask, causal, keep))
        return out + self.drop(self.mlp(self.norm2(out)))


class Transformer(nn.Module):
    """``depth`` blocks and a final LayerNorm: ``(B, L, width) -> (B, L, width)``."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False,
                keep: Tensor | None = None) -> Tensor:
        """``keep`` int64 ``(B, m)``: the outputs at those positions only, ``(B, m, width)`` (bidirectional only)."""
        if keep is not None and (mask is not None or causal):
            raise ValueError("Transformer: keep= needs full bidirectional attention (mask=None, causal=False)")
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, mask, causal, keep if i == last else None)
        if keep is not None and last < 0:
            x = _rows(x, keep)
        return self.norm(x)


def transformer_flops(width: int, depth: int, mlp_ratio: float, tokens: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward of :class:`Transformer` over one sequence of ``tokens``.

    Counts the matmuls only (projections, MLP, ``QK^T`` and ``AV``); norms and activations are
    not matmul work. A training step (forward + backward) is three times this.
    """
    hidden = int(round(mlp_ratio * width))
    per_token = 2 * (4 * width * width + 2 * width * hidden)  # qkv + proj, two MLP layers
    attention = 2 * 2 * tokens * tokens * width  # QK^T and AV over all heads
    return depth * (tokens * per_token + attention)
