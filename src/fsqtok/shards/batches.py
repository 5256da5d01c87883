"""Batches for ``tokenize``: shard-aligned batches of a source, decoded in DataLoader workers.

Batches never cross a shard boundary. Workers stack equal-shaped samples before handing a batch
over (:func:`group_batch`), so one tensor per shape crosses to the main process.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Iterator

import torch

from ..data.hf import StreamSource, row_key
from ..data.loading import SourceDataset, checked_item, failed_item
from ..data.preprocess import Preprocess
from ..media import MediaError


def group_batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate (in the worker): stack samples of equal shape, keep the rest of each item.

    Returns ``{"items": [item without "x"], "groups": [(positions, stacked x)]}``; failed items
    (``x=None``) are in no group.
    """
    by_shape: dict[tuple, list[int]] = {}
    for pos, it in enumerate(items):
        if it["x"] is not None:
            by_shape.setdefault(tuple(it["x"].shape), []).append(pos)
    groups = [(pos, torch.stack([items[i]["x"] for i in pos])) for pos in by_shape.values()]
    return {"items": [{k: v for k, v in it.items() if k != "x"} for it in items], "groups": groups}


def worker_init(_: int, niceness: int = 0) -> None:
    """DataLoader worker set-up: one torch thread; ``niceness`` > 0 lowers the worker's CPU priority.

    On a CPU-only run the encoders and the decode workers share the cores, so there workers run
    niced and decode in the time the encoders leave (an encoder on several threads, ``--encoders``
    below the thread count, also stalls at its next barrier while one of its threads is preempted).
    """
    torch.set_num_threads(1)
    if niceness:
        try:
            os.nice(niceness)
        except OSError:  # not permitted: keep the default priority
            pass


def loader_kwargs(num_workers: int, device: torch.device, collate: Callable) -> dict[str, Any]:
    kw: dict[str, Any] = {"collate_fn": collate, "num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers:
        # CPU: workers run niced so they never preempt the encoder's threads (see worker_init);
        # CUDA: spawned workers, since a forked process must not touch the parent's CUDA context
        cpu = device.type == "cpu"
        kw.update(worker_init_fn=functools.partial(worker_init, niceness=10 if cpu else 0), prefetch_factor=4,
                  multiprocessing_context=None if cpu else "spawn")
    return kw


def map_batches(source: Any, prep: Preprocess, todo: list[int], shard_size: int, batch_size: int,
                num_workers: int, device: torch.device) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(shard, batch)`` for the shards in ``todo`` of a random-access source."""
    n = len(source.keys)
    batches, batch_shard = [], []
    for i in todo:
        lo, hi = i * shard_size, min(n, (i + 1) * shard_size)
        for b in range(lo, hi, batch_size):
            batches.append(list(range(b, min(hi, b + batch_size))))
            batch_shard.append(i)
    if not batches:
        return
    loader = torch.utils.data.DataLoader(SourceDataset(source, prep), batch_sampler=batches,
                                         **loader_kwargs(num_workers, device, group_batch))
    yield from zip(batch_shard, loader)


def _keep(batch: Any) -> Any:
    return batch


def stream_batches(source: StreamSource, prep: Preprocess, wanted: Callable[[int], bool], shard_size: int,
                   batch_size: int, num_workers: int, device: torch.device,
                   seen: dict[str, int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(shard, batch)`` from a stream; ``seen["rows"]`` holds the stream's length once it ended."""
    ds = StreamBatches(source, prep, shard_size, batch_size, wanted)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, **loader_kwargs(num_workers, device, _keep))
    for msg in loader:
        if "end" in msg:
            seen["rows"] = max(seen.get("rows", 0), int(msg["end"]))
        else:
            yield msg["shard"], msg


class StreamBatches(torch.utils.data.IterableDataset):
    """Batches of a :class:`StreamSource` cut exactly as a random-access run would cut them.

    Yields ``{"shard": i, **group_batch(items)}`` for the shards ``wanted(i)`` accepts, in stream
    order, then one ``{"end": number_of_rows}``. Every worker (and rank) reads the whole stream,
    media undecoded, so skipping costs only the bytes read; batches are numbered in stream order
    and worker ``w`` of ``k`` decodes batch ``b`` when ``b % k == w``; the DataLoader's
    round-robin over workers hands them back in order.
    """

    def __init__(self, source: StreamSource, prep: Preprocess, shard_size: int, batch_size: int,
                 wanted: Callable[[int], bool]) -> None:
        self.source, self.prep = source, prep
        self.shard_size, self.batch_size, self.wanted = shard_size, batch_size, wanted

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        S, B = self.shard_size, self.batch_size
        current, items, mine, b = None, [], False, -1
        n = 0
        for index, row in self.source.rows():
            n = index + 1
            shard = index // S
            if not self.wanted(shard):
                continue
            batch_id = (shard, (index - shard * S) // B)
            if batch_id != current:
                if mine:
                    yield {"shard": current[0], **group_batch(items)}
                current, items, b = batch_id, [], b + 1
                mine = b % nw == wid
            if mine:
                key = row_key(index)
                try:
                    x, meta, label = self.source.load_row(index, row, self.prep)
                    items.append(checked_item(index, key, x, meta, label, self.prep.modality))
                except (MediaError, OSError, ValueError, RuntimeError) as e:
                    items.append(failed_item(index, key, e))
        if mine:
            yield {"shard": current[0], **group_batch(items)}
        yield {"end": n}
