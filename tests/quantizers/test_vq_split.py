"""UViM's bottleneck: big_vision-style codebook splitting revives dead VQ codes; plain VQ leaves them dead."""

from __future__ import annotations

import torch

from fsqtok.quantizers.vq_split import SplittingVectorQuantizer
from fsqtok.quantizers import VectorQuantizer

CENTRES = 20 + torch.tensor([[3.0 * i, 3.0 * j] for i in range(3) for j in range(3)])  # 9 clusters, away from 0
# (an unused EMA code decays towards the origin, so clusters there would revive it by accident)


def train(q: VectorQuantizer, steps: int = 150) -> torch.Tensor:
    """Feed clustered data whose clusters all sit near code 0 at first; return the last batch's code counts."""
    with torch.no_grad():
        q.embed.fill_(-50.0)  # every code far away ...
        q.embed[0] = CENTRES.mean(0)  # ... except code 0, the nearest for every input
        q.ema_embed_sum.copy_(q.embed)
    g = torch.Generator().manual_seed(0)
    q.train()
    for _ in range(steps):
        x = CENTRES[torch.randint(0, 9, (256,), generator=g)] + 0.1 * torch.randn(256, 2, generator=g)
        out = q(x[:, :, None])
    return torch.bincount(out.indices.flatten(), minlength=q.codebook_size)


def test_splitting_revives_dead_codes_and_plain_vq_does_not():
    plain = VectorQuantizer(16, 2, ema_decay=0.9)
    split = SplittingVectorQuantizer(16, 2, ema_decay=0.9, split_threshold=0.5)
    torch.manual_seed(0)
    used_plain = int((train(plain) > 0).sum())
    torch.manual_seed(0)
    counts = train(split)
    assert used_plain == 1  # collapse: the dead codes are never chosen again
    assert int((counts > 0).sum()) >= 9  # every cluster gets its own code
    assert int(split.num_splits) > 0
    assert bool((split.ema_cluster_size >= 0.5).all())  # no code stays below the threshold after a step
    # most clusters get a code at their centre (EMA k-means can leave two clusters sharing one)
    def centred(q: VectorQuantizer) -> int:
        return int((torch.cdist(CENTRES, q.codebook).min(1).values < 0.2).sum())

    assert centred(split) >= 5 and centred(plain) == 1


def test_split_halves_the_count_and_copies_the_vector():
    q = SplittingVectorQuantizer(4, 3, ema_decay=0.9, split_threshold=0.5)
    with torch.no_grad():
        q.ema_cluster_size.copy_(torch.tensor([10.0, 2.0, 0.1, 3.0]))
        q.ema_embed_sum.copy_(torch.arange(12.0).view(4, 3) * q.ema_cluster_size[:, None])
        q.embed.copy_(torch.arange(12.0).view(4, 3))
    assert q.split_dead_codes() == 1
    assert torch.equal(q.ema_cluster_size, torch.tensor([5.0, 2.0, 5.0, 3.0]))
    assert torch.allclose(q.embed[2], torch.tensor([0.0, 1.0, 2.0]), rtol=2e-3)  # a perturbed copy of code 0
    assert not torch.equal(q.embed[2], q.embed[0]) or q.embed[0].abs().sum() == 0
    assert torch.equal(q.embed[0], torch.tensor([0.0, 1.0, 2.0]))  # the centroid of the split code is unchanged
    assert q.split_dead_codes() == 0


def test_splitting_is_deterministic():
    a = SplittingVectorQuantizer(16, 2, ema_decay=0.9, split_threshold=0.5)
    b = SplittingVectorQuantizer(16, 2, ema_decay=0.9, split_threshold=0.5)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(0)
    train(a, 40)
    torch.manual_seed(0)
    train(b, 40)
    assert torch.equal(a.embed, b.embed)
