"""The shared transformer: the plain (training) path, the oneDNN inference fast path, ``keep`` and packed weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsqtok.generative import transformer as tr
from fsqtok.generative.transformer import Block, Transformer, packed_weights

fast = pytest.mark.skipif(not tr._onednn_linear(), reason="oneDNN's fused linear is not in this PyTorch build")


def stack(depth: int = 3, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    t = Transformer(32, depth, 4, dropout=0.0).eval()
    with torch.no_grad():  # LayerNorm affine away from (1, 0), so a skipped or misplaced affine shows
        for p in t.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return t


def inputs(b: int = 3, n: int = 10) -> torch.Tensor:
    return torch.randn(b, n, 32, generator=torch.Generator().manual_seed(1))


def reference_block(blk: Block, x: torch.Tensor) -> torch.Tensor:
    """The pre-norm block written out op by op (dropout off): what training computes."""
    b, n, d = x.shape
    q, k, v = blk.attn.qkv(blk.norm1(x)).view(b, n, 3, 4, d // 4).permute(2, 0, 3, 1, 4)
    x = x + blk.attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
    return x + blk.mlp[2](F.gelu(blk.mlp[0](blk.norm2(x)), approximate="tanh"))


def spy_fused(monkeypatch) -> list[bool]:
    """Record the ``fused`` flag of every linear layer call."""
    seen, linear = [], tr._linear
    monkeypatch.setattr(tr, "_linear", lambda x, w, b, fused, **kw: (seen.append(fused), linear(x, w, b, fused, **kw))[1])
    return seen


def test_training_and_autograd_take_the_plain_path_bit_for_bit(monkeypatch):
    t, x = stack(), inputs()
    ref = t.norm(reference_block(t.blocks[2], reference_block(t.blocks[1], reference_block(t.blocks[0], x))))
    seen = spy_fused(monkeypatch)
    assert torch.equal(t.train()(x), ref)  # train mode (dropout 0), autograd on
    assert torch.equal(t.eval()(x), ref)  # eval mode, autograd on
    with torch.no_grad():
        assert torch.equal(t.train()(x), ref)  # train mode, autograd off
    assert seen and not any(seen)


@fast
def test_fast_path_runs_at_inference_and_matches_the_plain_path(monkeypatch):
    t, x = stack(), inputs()
    ref = t(x)  # autograd on: the plain path
    seen = spy_fused(monkeypatch)
    with torch.no_grad():
        out = t(x)
    with torch.inference_mode():
        assert torch.equal(t(x), out)
    assert len(seen) == 2 * 3 * 4 and all(seen)  # qkv, proj, fc1, fc2 of 3 blocks, twice
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(tr, "_onednn_linear", lambda: False)  # a build without the op: the plain path, exactly
    with torch.no_grad():
        assert torch.equal(t(x), ref)


def test_autocast_and_other_dtypes_take_the_plain_path():
    t, x = stack(), inputs()
    with torch.no_grad():
        assert not tr.fused_inference(x.double(), t.blocks[0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not tr.fused_inference(x, t.blocks[0])
        assert tr.fused_inference(x, t.blocks[0]) == tr._onednn_linear()
        assert not tr.fused_inference(x, t.blocks[0].train())


@pytest.mark.parametrize("grad", [True, False])
def test_keep_returns_those_rows_of_the_full_output(grad):
    t, x = stack(), inputs()
    keep = torch.tensor([[0, 3, 9], [9, 1, 1], [5, 6, 7]])  # any order, repeats allowed
    with torch.set_grad_enabled(grad):
        full, part = t(x), t(x, keep=keep)
    assert part.shape == (3, 3, 32)
    torch.testing.assert_close(part, full.gather(1, keep[..., None].expand(-1, -1, 32)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="keep= needs full bidirectional attention"):
        t(x, causal=True, keep=keep)


@fast
def test_packed_weights_give_the_unpacked_output_and_are_dropped_on_exit():
    t, x, keep = stack(), inputs(), torch.tensor([[1, 2], [3, 4], [0, 9]])
    with torch.no_grad():
        ref, ref_keep = t(x), t(x, keep=keep)
        with packed_weights():
            for _ in range(2):  # packed on the first call, reused on the second
                torch.testing.assert_close(t(x), ref, rtol=1e-6, atol=1e-6)
                torch.testing.assert_close(t(x, keep=keep), ref_keep, rtol=1e-6, atol=1e-6)
            packs = tr._PACKED.get()
            assert len(packs) == 3 * 4 + 2  # every block's 4 weights, and the last block's q and kv parts
        assert tr._PACKED.get() is None
