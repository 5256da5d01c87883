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
   The loop asks the body for the still-masked positions only (``keep``); the peer runs its whole
   encoder and keeps those rows before its final norm, so the loop's savings (final norm, head and
   sampling ops on the masked rows) are the peer's too. Ours and the peer alternate, one call each
   per round, after a warm-up round; the figure is the median over ``--repeat`` rounds.

Every time is this process's CPU time (``time.process_time``) with one torch thread by default, so
other processes sharing the cores do not count against us (a wall clock on a busy shared machine
measures the neighbours). With ``--threads N`` it is CPU time over N threads. Training keeps the
best of ``--repeat``; sampling also prints the wall-clock ratio. ``--part sample`` skips training.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
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
    """``nn.TransformerEncoder`` with a final LayerNorm, in place of MaskGIT's own transformer.

    With ``keep`` (int64 ``(B, m)``, as the decoding loop passes it) the whole encoder runs and its
    rows ``keep`` go through the final norm: ``(B, L, width) -> (B, m, width)``.
    """

    def __init__(self, cfg: MaskGITConfig) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, int(cfg.mlp_ratio * cfg.width), cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        x = self.encoder(x)
        if keep is not None:
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
        return self.norm(x)


def sampling_images_per_s(cfg: MaskGITConfig, batch: int, repeat: int) -> dict[str, float]:
    """Images/s of ours and the peer (median CPU time over ``repeat`` alternating rounds) and the wall-clock ratio."""
    models = []
    for peer in (False, True):
        torch.manual_seed(0)
        model = MaskGIT(cfg)
        if peer:
            model.transformer = TorchEncoderBody(cfg)
        models.append(model.eval())
    labels = torch.arange(batch) % cfg.num_classes
    cpu, wall = ([], []), ([], [])
    for rnd in range(repeat + 1):  # round 0 warms up
        for i, model in enumerate(models):
            t0, w0 = time.process_time(), time.perf_counter()
            model.generate(labels, steps=12, generator=torch.Generator().manual_seed(0))
            if rnd:
                cpu[i].append((time.process_time() - t0) / THREADS)
                wall[i].append(time.perf_counter() - w0)
    ours, peer = (batch / statistics.median(c) for c in cpu)
    return {"ours": ours, "peer": peer, "wall_ratio": statistics.median(wall[1]) / statistics.median(wall[0])}


def train_section(cfg: MaskGITConfig, args: argparse.Namespace) -> str:
    """The training-efficiency paragraph and table (measures the matmul peak before and after the steps)."""
    peak_before, n_peak = matmul_peak(args.repeat)
    step_s = train_step_seconds(cfg, args.batch, args.repeat)
    peak_after, n_after = matmul_peak(args.repeat)
    peak = max(peak_before, peak_after)
    flops = MaskGIT(cfg).train_flops(args.batch)
    eff = flops / (step_s * peak)
    print(f"train: {flops / 1e9:.1f} GFLOP/step, {step_s * 1e3:.0f} ms/step, {flops / step_s / 1e9:.1f} GFLOP/s; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s -> efficiency {eff:.0%}", flush=True)
    return (f"**Training efficiency** (best of the repeats), default `MaskGITConfig` (width {cfg.width}, depth "
            f"{cfg.depth}, {cfg.heads} heads, {cfg.grid[0]}x{cfg.grid[1]} tokens, {cfg.codebook_size} codes), batch "
            f"{args.batch}, loss + backward + AdamW:\n\n"
            "| matmul FLOPs/step | step time | achieved | fp32 matmul peak (same run) | efficiency |\n"
            "| ---: | ---: | ---: | ---: | ---: |\n"
            f"| {flops / 1e9:.1f} G | {step_s * 1e3:.0f} ms | {flops / step_s / 1e9:.1f} GFLOP/s | "
            f"{peak / 1e9:.1f} GFLOP/s (mm {max(n_peak, n_after)}^2) | {eff:.0%} |\n\n")


def sample_section(cfg: MaskGITConfig, args: argparse.Namespace) -> str:
    """The sampling paragraph and table: ours against the peer at 49 and 256 tokens."""
    body = (f"**Sampling** (12 decoding steps, batch {args.sample_batch}, same model size; the peer is the same "
            "decoding loop with the body swapped for `torch.nn.TransformerEncoder`, pre-norm, inference fast path; "
            f"median of {args.repeat} alternating rounds):\n\n"
            "| tokens | fsqtok images/s | nn.TransformerEncoder images/s | ratio (CPU time) | ratio (wall clock) |\n"
            "| ---: | ---: | ---: | ---: | ---: |\n")
    for grid in ((7, 7), (16, 16)):
        r = sampling_images_per_s(dataclasses.replace(cfg, grid=grid), args.sample_batch, args.repeat)
        print(f"sample {grid[0]}x{grid[1]}: fsqtok {r['ours']:.2f} images/s, nn.TransformerEncoder {r['peer']:.2f} "
              f"images/s, ratio {r['ours'] / r['peer']:.2f} (wall clock {r['wall_ratio']:.2f})", flush=True)
        body += (f"| {grid[0] * grid[1]} ({grid[0]}x{grid[1]}) | {r['ours']:.2f} | {r['peer']:.2f} | "
                 f"{r['ours'] / r['peer']:.2f} | {r['wall_ratio']:.2f} |\n")
    return body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--batch", type=int, default=64, help="training batch")
    p.add_argument("--sample-batch", type=int, default=32, help="images per generate call")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats (training: the best; sampling: the median)")
    p.add_argument("--part", choices=("all", "train", "sample"), default="all", help="what to measure")
    p.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = p.parse_args()
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(args.threads)
    cfg = MaskGITConfig()
    cmd = (f"python benchmarks/bench_maskgit_perf.py --threads {args.threads} --batch {args.batch} "
           f"--sample-batch {args.sample_batch} --repeat {args.repeat} --part {args.part}")
    body = (f"## MaskGIT speed (CPU)\n\n`{cmd}` on {machine_line()}; times are this process's CPU time "
            "(`time.process_time`), so processes sharing the cores do not count.\n\n")
    if args.part in ("all", "train"):
        body += train_section(cfg, args)
    if args.part in ("all", "sample"):
        body += sample_section(cfg, args)
    print(body)
    if args.write:
        write_section("bench_maskgit_perf", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
