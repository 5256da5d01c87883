"""Encoding ``tokenize``'s batches: one batch -> rows (:func:`encode_batch`), and a stream of batches
encoded by several threads at once, handed back in order (:func:`encode_in_order`).

On a CPU the encoders are threads that each run one batch on ``torch threads // encoders``
intra-op threads (by default one each, one encoder per torch thread). Several single-threaded
encoders never wait for one another, whereas one encoder spread over every core stalls at each
operator's barrier whenever one of its threads is preempted, by the decoding that shares the
cores or by anything else on the machine; the tokens are the same (each sample's arithmetic
does not depend on the intra-op thread count). Other devices run one encoder thread. The
calling thread meanwhile draws the next batches (decoding them itself without DataLoader workers).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import numpy as np
import torch

Rows = list[dict[str, Any]]
Failures = list[dict[str, str]]


def encode_batch(tok: Any, batch: dict[str, Any], device: torch.device, dtype: np.dtype,
                 stats: dict[str, float]) -> tuple[Rows, Failures]:
    """Encode one batch (stacked groups of equal shape); returns rows and failures.

    A group that fails is retried one sample at a time to isolate the bad one. Tokens outside
    ``[0, codebook_size)`` (e.g. from NaN weights) fail their sample and are never cast.
    ``stats["encode_s"]`` and ``stats["encoded"]`` count the time in ``tok.encode`` and its samples.
    """
    items = batch["items"]
    failures = [{"key": it["key"], "reason": it["error"]} for it in items if it["error"] is not None]
    rows = []
    for positions, x in batch["groups"]:
        try:
            encoded = list(zip(positions, _encode(tok, x, device, stats)))
        except (RuntimeError, ValueError):
            encoded = []
            for j, pos in enumerate(positions):
                try:
                    encoded.append((pos, _encode(tok, x[j:j + 1], device, stats)[0]))
                except (RuntimeError, ValueError) as e:
                    key = items[pos]["key"]
                    failures.append({"key": key, "reason": f"{key}: encode failed: {' '.join(str(e).split())}"})
        for pos, tokens in encoded:
            it = items[pos]
            lo, hi = (int(tokens.min()), int(tokens.max())) if tokens.size else (0, 0)
            if lo < 0 or hi >= tok.codebook_size:
                bad = lo if lo < 0 else hi
                failures.append({"key": it["key"], "reason": f"{it['key']}: token {bad} outside "
                                 f"[0, {tok.codebook_size}) (non-finite latents or weights?)"})
                continue
            rows.append({"key": it["key"], "tokens": tokens.astype(dtype), "label": it["label"], **it["meta"]})
    return rows, failures


def _encode(tok: Any, x: torch.Tensor, device: torch.device, stats: dict[str, float]) -> np.ndarray:
    t0 = time.perf_counter()
    with torch.inference_mode():
        idx = tok.encode(x.to(device, non_blocking=True))
    out = idx.cpu().numpy()
    stats["encode_s"] += time.perf_counter() - t0
    stats["encoded"] += x.shape[0]
    return out


def encoder_layout(device: torch.device, encoders: int | None) -> tuple[int, int]:
    """``(encoder threads, torch intra-op threads each)``: on a CPU ``encoders`` (default: the torch
    thread count) sharing the torch threads; elsewhere one encoder."""
    threads = torch.get_num_threads()
    if device.type != "cpu":
        return 1, threads
    n = encoders or threads
    return n, max(1, threads // n)


def start_encoder_thread(device: torch.device, threads: int) -> None:
    """An encoder thread's set-up: its intra-op threads and, on a CPU, denormals flushed to zero (a
    per-thread CPU flag: silence and zero padding otherwise slow the audio encoder ~50x); on a GPU
    the caller's device (the current CUDA device is per thread)."""
    if device.type == "cpu":
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
    elif device.type == "cuda":
        torch.cuda.set_device(device)


def _encode_one(tok: Any, batch: dict[str, Any], device: torch.device,
                dtype: np.dtype) -> tuple[Rows, Failures, dict[str, float]]:
    stats = {"encode_s": 0.0, "encoded": 0}
    rows, failures = encode_batch(tok, batch, device, dtype, stats)
    return rows, failures, stats


@contextmanager
def _kept_num_threads() -> Iterator[None]:
    """Restore the process's torch thread count (encoder threads change it) when the block ends."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_in_order(batches: Iterable[tuple[int, dict[str, Any]]], tok: Any, device: torch.device,
                    dtype: np.dtype, encoders: int | None = None
                    ) -> Iterator[tuple[int, Rows, Failures, dict[str, float]]]:
    """``(shard, rows, failures, stats)`` for each ``(shard, batch)`` of ``batches``, in their order.

    The batches are encoded on :func:`encoder_layout`'s threads, at most one more batch in flight
    than there are encoders; the caller's thread draws ``batches``. Closing the generator early
    waits for the running batches and stops the threads.
    """
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    n, threads = encoder_layout(device, encoders)
    with _kept_num_threads():
        pool = ThreadPoolExecutor(n, thread_name_prefix="fsqtok-encode", initializer=start_encoder_thread,
                                  initargs=(device, threads))
        pending: deque = deque()
        try:
            for shard, batch in batches:
                pending.append((shard, pool.submit(_encode_one, tok, batch, device, dtype)))
                if len(pending) > n:
                    shard_done, fut = pending.popleft()
                    yield (shard_done, *fut.result())
            while pending:
                shard_done, fut = pending.popleft()
                yield (shard_done, *fut.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
