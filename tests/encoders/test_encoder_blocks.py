"""Shared 2D blocks: shapes, GroupNorm groups, and the inference forms (layout, in-place SiLU and adds)."""

import pytest
import torch

from fsqtok.encoders.blocks import (
    AttnBlock2d,
    Downsample2d,
    ResBlock2d,
    Upsample2d,
    group_norm,
    inference_layout,
    norm_silu,
    residual_add,
)


def test_2d_blocks_shapes():
    x = torch.randn(2, 8, 12, 20)
    assert ResBlock2d(8, 16)(x).shape == (2, 16, 12, 20)
    assert AttnBlock2d(8)(x).shape == x.shape
    assert Downsample2d(8)(x).shape == (2, 8, 6, 10)
    assert Upsample2d(8)(x).shape == (2, 8, 24, 40)


@pytest.mark.parametrize("channels,groups", [(2, 1), (8, 4), (32, 16), (48, 16), (64, 32), (512, 32)])
def test_group_norm_never_has_single_channel_groups(channels, groups):
    norm = group_norm(channels)
    assert norm.num_groups == groups
    assert torch.isfinite(norm(torch.randn(1, channels, 1, 1))).all()  # a 1x1 map of batch 1 still works


def test_inference_layout_is_channels_last_only_without_autograd():
    x = torch.randn(2, 3, 4, 4)
    assert inference_layout(x) is x  # autograd on: the training path keeps its layout
    with torch.no_grad():
        y = inference_layout(x)
        assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, x)
        frame = x[0]
        assert inference_layout(frame) is frame  # not a (B, C, H, W) map


def test_norm_silu_is_the_silu_of_the_norm_with_and_without_autograd():
    norm = group_norm(8)
    x = torch.randn(2, 8, 3, 3)
    expected = torch.nn.functional.silu(norm(x))
    assert torch.equal(norm_silu(norm, x), expected) and expected.requires_grad
    with torch.no_grad():
        assert torch.equal(norm_silu(norm, x), expected)


def test_residual_add_writes_into_the_branch_only_without_autograd():
    x, h = torch.randn(2, 3), torch.randn(2, 3)
    expected = x + h
    with torch.enable_grad():
        out = residual_add(x, h.clone().requires_grad_())
        assert torch.equal(out, expected) and out.grad_fn is not None
    with torch.no_grad():
        branch = h.clone()
        out = residual_add(x, branch)
    assert out is branch and torch.equal(out, expected)
