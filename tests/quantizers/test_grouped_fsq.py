"""GroupedFSQ: G groups of channels, one FSQ grid, indices (B, G, *S)."""

import pytest
import torch

from fsqtok.quantizers import FSQ, GroupedFSQ


def test_each_group_is_the_fsq_of_its_channels():
    q = GroupedFSQ([8, 7, 6, 6], 3, variant="printed")
    z = torch.randn(2, 12, 9, generator=torch.Generator().manual_seed(0)) * 2
    out = q(z)
    assert out.indices.shape == (2, 3, 9) and out.indices.dtype == torch.int64
    fsq = FSQ([8, 7, 6, 6], variant="printed")
    for g in range(3):
        single = fsq(z[:, 4 * g : 4 * g + 4])
        assert torch.equal(out.indices[:, g], single.indices)
        assert torch.equal(out.z_q[:, 4 * g : 4 * g + 4], single.z_q)
    assert torch.equal(q.decode_indices(out.indices), out.z_q)
    assert q.codebook_size == 8 * 7 * 6 * 6


def test_shape_errors_name_the_layout():
    q = GroupedFSQ([8, 5, 5, 5], 2)
    with pytest.raises(ValueError, match=r"expected features \(B, 8, \*spatial\) \(2 groups x 4\), got shape \(1, 4, 3\)"):
        q(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match=r"expected indices \(B, 2, \*spatial\), got shape \(1, 3, 5\)"):
        q.decode_indices(torch.zeros(1, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        GroupedFSQ([8, 5, 5, 5], 0)
