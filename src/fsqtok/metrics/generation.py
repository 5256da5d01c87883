"""Metrics of generated image sets on any feature network: k-NN precision and recall, token usage,
and batched, cached feature extraction.

Precision and recall follow Kynkäänniemi et al. 2019 (k=3): a generated feature is "precise" when it
lies inside the k-NN ball of some real feature, a real one is "recalled" when it lies inside the
ball of some generated one. The Fréchet distance of two feature sets and its bootstrap interval are
in :mod:`fsqtok.metrics.frechet`; the Fashion-MNIST classifier whose features they use is in
:mod:`fsqtok.metrics.classifier`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..files import atomic_path
from ..quantizers.stats import code_counts, perplexity_from_counts, usage_from_counts

K_NEIGHBOURS = 3


@torch.no_grad()
def features(extractor: nn.Module, x: Tensor, batch_size: int = 100) -> Tensor:
    """Images ``(N, 3, H, W)`` -> float64 features ``(N, D)``, ``batch_size`` images at a time."""
    return torch.cat([extractor(x[i:i + batch_size]).double() for i in range(0, len(x), batch_size)])


def cached_features(extractor: nn.Module, x: Tensor, key: str, cache_dir: Path | None) -> Tensor:
    """:func:`features`, stored under ``cache_dir`` by ``key`` (e.g. set spec, N and extractor weights).

    Concurrent runs may fill the same entry: each writes its own temporary file, then renames it.
    """
    if cache_dir is None:
        return features(extractor, x)
    path = Path(cache_dir) / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".pt")
    if path.is_file():
        return torch.load(path, weights_only=True)
    f = features(extractor, x)
    with atomic_path(path, unique=True) as tmp:
        torch.save(f, tmp)
    return f


def knn_radii(f: Tensor, k: int = K_NEIGHBOURS) -> Tensor:
    """Distance from each of ``(N, D)`` features to its k-th nearest other feature: ``(N,)``."""
    d = torch.cdist(f, f)
    return d.kthvalue(k + 1, dim=1).values  # index 0 is the point itself


def coverage_fraction(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 1024) -> float:
    """Fraction of ``points (N, D)`` inside at least one ball ``(centres (M, D), radii (M,))``."""
    inside = [(torch.cdist(points[i:i + chunk], centres) <= radii[None]).any(1) for i in range(0, len(points), chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: Tensor, fake: Tensor, k: int = K_NEIGHBOURS) -> tuple[float, float]:
    """k-NN manifold precision (fakes inside the real manifold) and recall (reals inside the fake one)."""
    return (coverage_fraction(fake, real, knn_radii(real, k)), coverage_fraction(real, fake, knn_radii(fake, k)))


def token_usage(tokens: Tensor, codebook_size: int) -> dict[str, float]:
    """Codebook usage, perplexity and entropy (bits per token) of int tokens of any shape, with the most
    usage that uniform use of ``codebook_size`` codes could show over that many tokens, ``1 - exp(-N/K)``."""
    counts = code_counts(tokens, codebook_size)
    n = int(tokens.numel())
    ppl = perplexity_from_counts(counts)
    return {"usage": usage_from_counts(counts), "perplexity": ppl, "entropy_bits": math.log2(ppl),
            "tokens_counted": n, "codebook_size": codebook_size,
            "uniform_usage_bound": 1 - math.exp(-n / codebook_size)}
