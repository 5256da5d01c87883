"""Evaluation of UViM models: the task's metrics, codebook usage and (stage II) token accuracy.

Three ways to predict, all scored by the task's metrics (:mod:`.uvim_tasks`):

* ``"oracle"``: stage I with the code its oracle makes from the true target (an upper bound);
* ``"no_code"``: the base model alone, ``f(x, empty)``;
* ``"lm"``: stage II decodes the code from the image (greedy), then ``f(x, z)``: the real model.

``code_tokens=k`` scores code prefixes: the oracle's first ``k`` tokens, or the LM's first ``k`` decoded
tokens; the base model sees the rest as dropped (as prefix code dropout trains it to).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from ...quantizers import CodebookUsage
from .stage1 import UViMStage1
from .lm import UViMLM

MODES = ("oracle", "no_code", "lm")


@torch.no_grad()
def predict_batch(stage1: UViMStage1, image: Tensor, target: Tensor | None, mode: str,
                  lm: UViMLM | None = None, code_tokens: int | None = None) -> tuple[Tensor, Tensor | None]:
    """``(prediction, code indices (B, L) or None)`` for one batch in ``mode`` (see module docstring);
    with ``code_tokens=k`` the code is its first ``k`` tokens, ``(B, k)``."""
    if mode == "oracle":
        if target is None:
            raise ValueError("oracle predictions need the target")
        if code_tokens is not None and not stage1.config.no_code:
            idx = stage1.encode(image, target).indices.flatten(1)[:, :code_tokens]
            return stage1.predict(image, idx), idx
        pred, idx = stage1.oracle_predict(image, target)
        return pred, None if idx is None else idx.flatten(1)
    if mode == "no_code":
        return stage1.predict(image), None
    if mode == "lm":
        if lm is None:
            raise ValueError("mode='lm' needs the stage-II model")
        idx = lm.generate(stage1.task.context(image), num_tokens=code_tokens)
        return stage1.predict(image, idx), idx
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


@torch.no_grad()
def evaluate(stage1: UViMStage1, batches: Iterable[dict[str, Tensor]], mode: str = "oracle",
             lm: UViMLM | None = None, gather: Callable | None = None, code_tokens: int | None = None) -> dict[str, float]:
    """Task metrics over ``batches`` of ``{"image", "target"}``, plus ``codebook_usage`` and
    ``perplexity`` of the codes used (not for ``no_code``) and, for ``lm``, ``token_accuracy``
    against the oracle's codes. ``gather`` (e.g. ``accelerator.gather_for_metrics``) collects
    every process's tensors first, so each process returns the figures of the whole set. ``code_tokens``:
    score code prefixes (module docstring)."""
    was = stage1.training, lm.training if lm is not None else False
    stage1.eval()
    if lm is not None:
        lm.eval()
    metrics = stage1.task.metrics()
    usage = CodebookUsage(stage1.codebook_size)
    hits = total = 0
    try:
        for batch in batches:
            x, y = batch["image"], batch["target"]
            pred, idx = predict_batch(stage1, x, y, mode, lm, code_tokens)
            ref = stage1.encode(x, y).indices.flatten(1)[:, :code_tokens] if mode == "lm" else None
            if gather is not None:
                pred, y = gather(pred), gather(y)
                idx, ref = (gather(t) if t is not None else None for t in (idx, ref))
            metrics.update(pred, y)
            if idx is not None:
                usage.update(idx)
            if ref is not None:
                hits, total = hits + int((idx == ref).sum()), total + ref.numel()
    finally:
        stage1.train(was[0])
        if lm is not None:
            lm.train(was[1])
    out = metrics.compute()
    if mode != "no_code" and usage.total:
        out.update(codebook_usage=usage.usage, perplexity=usage.perplexity)
    if total:
        out["token_accuracy"] = hits / total
    return out
