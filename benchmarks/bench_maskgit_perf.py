"""MaskGIT speed: training efficiency against the machine's measured matmul peak, and sampling throughput.

    python benchmarks/bench_maskgit_perf.py                 # prints a markdown section; --write adds it to BENCHMARKS.md
    python benchmarks/bench_maskgit_perf.py --threads 2 --batch 64 --sample-batch 32

1. **Training efficiency** of the default ``MaskGITConfig`` (width 256, depth 6, 8 heads, 7x7
   tokens, 1000 codes): model matmul FLOPs per step (:meth:`MaskGIT.train_flops`, forward +
   backward = 3x forward, the head on the expected masked count) divided by (measured step time
   x the fp32 matmul peak measured in the same run, best of square ``torch.mm`` sizes). A step is
   ``loss`` + ``backward`` + AdamW, in training mode (dropout on).
2. **Sampling**: images/s of ``generate`` (12 steps) at 7x7 = 49 and 16x16 = 256 tokens, against
   a peer of the same size run through the same decoding loop: the body swapped for
   ``torch.nn.TransformerEncoder`` (pre-norm, same width/depth/heads/MLP, its inference fast path).

Every time is this process's CPU time (``time.process_time``, best of ``--repeat``) with one torch
thread by default, so other processes sharing the cores do not count against us (a wall clock on
a busy shared machine measures the neighbours). With ``--threads N`` it is CPU time over N threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time

import torch
from torch import Tensor, nn

from common import machine_line, write_section

from fsqtok.generative import MaskGIT, MaskGITConfig

THREADS = 1  # torch threads (set from --threads): CPU time / THREADS approximates unloaded wall time


def cpu_seconds(fn, repeat: int, warmup: int = 1, threads: int = 1) -> float:
    """Best per-call CPU time of ``fn`` over ``repeat`` calls, divided by the thread count (~wall time unloaded)."""
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best / threads


def matmul_peak(repeat: int) -> tuple[float, int]:
    """Best fp32 ``torch.mm`` FLOP/s over square sizes (and the size that reached it)."""
    best = (0.0, 0)
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        s = cpu_seconds(lambda: [torch.mm(a, b) for _ in range(max(1, 2**30 // n**3))], repeat, threads=THREADS)
        s /= max(1, 2**30 // n**3)
        best = max(best, (2 * n**3 / s, n))
    return best


def train_step_seconds(cfg: MaskGITConfig, batch: int, repeat: int) -> float:
    torch.manual_seed(0)
    model = MaskGIT(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(cfg.codebook_size, (batch, *cfg.grid))
    labels = torch.randint(cfg.num_classes, (batch,))
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = model.loss(tokens, labels, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return cpu_seconds(step, repeat, warmup=2, threads=THREADS)


class TorchEncoderBody(nn.Module):
    """``nn.TransformerEncoder`` with a final LayerNorm, in place of MaskGIT's own transformer."""

    def __init__(self, cfg: MaskGITConfig) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.mlp_ratio * cfg.width), cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.encoder(x))


def sampling_images_per_s(cfg: MaskGITConfig, batch: int, repeat: int) -> tuple[float, float]:
    """(ours, peer) images/s; the two are timed alternately, best of ``repeat`` each, so load changes hit both."""
    models = []
    for peer in (False, True):
        torch.manual_seed(0)
        model = MaskGIT(cfg)
        if peer:
            model.transformer = TorchEncoderBody(cfg)
        models.append(model.eval())
    labels = torch.arange(batch) % cfg.num_classes
    best = [math.inf, math.inf]
    with torch.inference_mode():
        for rnd in range(repeat + 1):  # round 0 warms up
            for i, model in enumerate(models):
                t0 = time.process_time()
                model.generate(labels, steps=12, generator=torch.Generator().manual_seed(0))
                if rnd:
                    best[i] = min(best[i], (time.process_time() - t0) / THREADS)
    return batch / best[0], batch / best[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--batch", type=int, default=64, help="training batch")
    p.add_argument("--sample-batch", type=int, default=32, help="images per generate call")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats (the best is kept)")
    p.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = p.parse_args()
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(args.threads)
    cfg = MaskGITConfig()

    peak_before, n_peak = matmul_peak(args.repeat)
    step_s = train_step_seconds(cfg, args.batch, args.repeat)
    peak_after, n_after = matmul_peak(args.repeat)
    peak = max(peak_before, peak_after)
    flops = MaskGIT(cfg).train_flops(args.batch)
    eff = flops / (step_s * peak)
    print(f"train: {flops / 1e9:.1f} GFLOP/step, {step_s * 1e3:.0f} ms/step, {flops / step_s / 1e9:.1f} GFLOP/s; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s -> efficiency {eff:.0%}", flush=True)

    rows = []
    for grid in ((7, 7), (16, 16)):
        c = dataclasses.replace(cfg, grid=grid)
        ours, theirs = sampling_images_per_s(c, args.sample_batch, args.repeat)
        rows.append((grid, ours, theirs))
        print(f"sample {grid[0]}x{grid[1]}: fsqtok {ours:.1f} images/s, nn.TransformerEncoder {theirs:.1f} images/s",
              flush=True)

    cmd = (f"python benchmarks/bench_maskgit_perf.py --threads {args.threads} --batch {args.batch} "
           f"--sample-batch {args.sample_batch} --repeat {args.repeat}")
    body = (f"## MaskGIT speed (CPU)\n\n`{cmd}` on {machine_line()}; times are this process's CPU time "
            "(`time.process_time`, best of the repeats), so processes sharing the cores do not count.\n\n"
            f"**Training efficiency**, default `MaskGITConfig` (width {cfg.width}, depth {cfg.depth}, {cfg.heads} heads, "
            f"{cfg.grid[0]}x{cfg.grid[1]} tokens, {cfg.codebook_size} codes), batch {args.batch}, loss + backward + AdamW:\n\n"
            "| matmul FLOPs/step | step time | achieved | fp32 matmul peak (same run) | efficiency |\n"
            "| ---: | ---: | ---: | ---: | ---: |\n"
            f"| {flops / 1e9:.1f} G | {step_s * 1e3:.0f} ms | {flops / step_s / 1e9:.1f} GFLOP/s | "
            f"{peak / 1e9:.1f} GFLOP/s (mm {max(n_peak, n_after)}^2) | {eff:.0%} |\n\n"
            f"**Sampling** (12 decoding steps, batch {args.sample_batch}, same model size; the peer is the same decoding "
            "loop with the body swapped for `torch.nn.TransformerEncoder`, pre-norm, inference fast path):\n\n"
            "| tokens | fsqtok images/s | nn.TransformerEncoder images/s | ratio |\n| ---: | ---: | ---: | ---: |\n")
    for grid, ours, theirs in rows:
        body += f"| {grid[0] * grid[1]} ({grid[0]}x{grid[1]}) | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |\n"
    print(body)
    if args.write:
        write_section("bench_maskgit_perf", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
