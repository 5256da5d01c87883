"""Usage, perplexity and bits per token, accumulated."""

import math

import pytest
import torch

from fsqtok.quantizers import FSQ, CodebookUsage, ResidualFSQ, bits_per_token, code_counts


def test_known_values():
    idx = torch.tensor([0, 0, 1, 1])
    acc = CodebookUsage(4)
    acc.update(idx)
    assert acc.usage == 0.5
    assert math.isclose(acc.perplexity, 2.0)
    assert bits_per_token(1000) == math.log2(1000)
    uniform = CodebookUsage(16)
    uniform.update(torch.arange(16).repeat(3))
    assert uniform.usage == 1.0 and math.isclose(uniform.perplexity, 16.0, rel_tol=1e-12)


def test_accumulates_over_batches_like_one_batch():
    a, b = CodebookUsage(50), CodebookUsage(50)
    batches = [torch.randint(0, 50, (7, 3)) for _ in range(5)]
    for x in batches:
        a.update(x)
    b.update(torch.cat(batches))
    assert torch.equal(a.counts, b.counts) and a.total == 105


def test_output_usage_matches_accumulator_and_stages():
    rfsq = ResidualFSQ([5, 5], num_stages=3)
    out = rfsq(torch.randn(4, 2, 8, 8))
    acc = CodebookUsage(25, num_stages=3)
    acc.update(out.indices)
    assert math.isclose(out.usage(), acc.usage) and math.isclose(out.perplexity(), acc.perplexity)
    fsq_out = FSQ([5, 5])(torch.randn(4, 2, 8, 8))
    assert 0 < fsq_out.usage() <= 1


def test_out_of_range_rejected():
    with pytest.raises(ValueError, match="out of range"):
        code_counts(torch.tensor([3]), 3)
