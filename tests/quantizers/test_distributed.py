"""Two gloo processes on the CPU: usage all-reduce, identical VQ codebooks, identical dropout draws."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fsqtok.quantizers import CodebookUsage, ResidualFSQ, VectorQuantizer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)  # same initial codebook on both ranks
        vq = VectorQuantizer(16, 4, ema_decay=0.9, dead_code_threshold=0.2).train()
        rfsq = ResidualFSQ([5, 5, 5], num_stages=4, quantize_dropout=True, seed=1).train()
        torch.manual_seed(100 + rank)  # different data per rank
        acc = CodebookUsage(16)
        active = []
        for _ in range(5):
            acc.update(vq(torch.randn(2, 4, 3, 3) * (1 + rank)).indices)
            active.append(rfsq(torch.randn(2, 3, 2, 2)).num_active)
        local = acc.counts.clone()
        acc.all_reduce()
        torch.save({"embed": vq.embed, "local": local, "global": acc.counts, "active": active},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_consistency(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["embed"], r1["embed"])
    assert torch.equal(r0["global"], r0["local"] + r1["local"])
    assert torch.equal(r0["global"], r1["global"])
    assert r0["active"] == r1["active"]
