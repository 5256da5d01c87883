"""A pre-norm transformer encoder stack, shared by the token models (MaskGIT; UViM's stage II can reuse it).

Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`, so PyTorch picks
the fused kernel for the device (flash / memory-efficient on CUDA, the fused CPU kernel
otherwise). ``mask`` follows that function's convention (``True`` = may attend), so the same
block serves bidirectional (``mask=None``) and causal (``causal=True``) models. Dropout acts on
the residual branches only, not on the attention probabilities: attention-probability dropout
sends PyTorch to its unfused math attention (on CPU: extra bmm, softmax and mask passes).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection. ``(B, L, width) -> (B, L, width)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"Attention: width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


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

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask, causal))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """``depth`` blocks and a final LayerNorm: ``(B, L, width) -> (B, L, width)``."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        for block in self.blocks:
            x = block(x, mask, causal)
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
