"""Helpers shared by the benchmarks: a robust timer, the BENCHMARKS.md section writer, and :class:`Lane`
(the resumable multi-process stage runner of the long reproductions)."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import torch

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def time_call(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 15, min_seconds: float = 0.02) -> float:
    """Seconds per call of ``fn`` (best of ``repeat`` samples; each loops enough calls to last ``min_seconds``)."""
    for _ in range(warmup):
        fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t0 >= min_seconds or n >= 2**14:
            break
        n *= 2
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return min(samples)  # the least-disturbed sample: other processes only ever add time


def alternating_medians(fns: dict[str, Callable[[], object]], *, repeat: int = 5,
                        min_seconds: float = 0.05) -> dict[str, float]:
    """Median wall seconds per call of each of ``fns``, timed in turn ``repeat`` times (round robin), so a
    change of load on a shared machine hits every candidate alike; each sample loops enough calls to
    last ``min_seconds``."""
    loops = {}
    for name, fn in fns.items():  # warm up, then size the loop
        fn()
        t0 = time.perf_counter()
        fn()
        loops[name] = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(loops[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / loops[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def matmul_peak(repeat: int = 3) -> float:
    """The machine's fp32 matmul FLOP/s at the current thread count: best ``torch.mm`` over square sizes."""
    best = 0.0
    for n in (512, 1024, 1536):
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n**3 / time_call(lambda: torch.mm(a, b), warmup=1, repeat=repeat, min_seconds=0.05))
    return best


def conv_peak(repeat: int = 3) -> float:
    """The machine's fp32 convolution FLOP/s: best of wide 3x3 2D convs (channels-last and not) and a 1D conv."""
    cases = [(torch.nn.Conv2d(128, 128, 3, padding=1), torch.randn(4, 128, 32, 32)),
             (torch.nn.Conv2d(64, 64, 3, padding=1), torch.randn(8, 64, 64, 64)),
             (torch.nn.Conv2d(64, 64, 3, padding=1), torch.randn(8, 64, 32, 32).contiguous(memory_format=torch.channels_last)),
             (torch.nn.Conv1d(128, 128, 7, padding=3), torch.randn(1, 128, 16384))]
    best = 0.0
    with torch.inference_mode():
        for conv, x in cases:
            y = conv(x)
            flops = 2 * y.numel() * conv.weight[0].numel()
            best = max(best, flops / time_call(lambda: conv(x), warmup=1, repeat=repeat, min_seconds=0.05))
    return best


def machine_line() -> str:
    """One line naming the machine and software the figures were taken on."""
    return (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section of BENCHMARKS.md between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEvery figure below comes from the command printed beside it.\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


class Lane:
    """A reproduction's resumable stages: a results JSON that survives restarts, subprocesses run ``jobs``
    at a time (``OMP_NUM_THREADS=1``, ``REPO/src`` on ``PYTHONPATH``, each logging to its own file), and
    per-stage wall times. A stage returns whether it computed anything; one that only collected outputs
    already on disk records no time."""

    def __init__(self, results_path: Path, jobs: int, repo: Path, name: str) -> None:
        self.results_path, self.jobs, self.repo, self.name = results_path, jobs, repo, name
        self.results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
        self.env = {**os.environ, "OMP_NUM_THREADS": "1",
                    "PYTHONPATH": os.pathsep.join([str(repo / "src"), os.environ.get("PYTHONPATH", "")])}

    def save(self) -> None:
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        self.results_path.write_text(json.dumps(self.results, indent=2) + "\n")

    def run(self, cmds: list[list[str]], logs: list[Path]) -> None:
        """Run commands, ``jobs`` at a time, each appending to its log; any failure stops the lane."""
        pending, running = list(zip(cmds, logs)), []
        while pending or running:
            while pending and len(running) < self.jobs:
                cmd, log = pending.pop(0)
                log.parent.mkdir(parents=True, exist_ok=True)
                running.append((subprocess.Popen(cmd, cwd=self.repo, env=self.env, stdout=open(log, "a"),
                                                 stderr=subprocess.STDOUT), log))
            time.sleep(2)
            for proc, log in list(running):
                if proc.poll() is not None:
                    running.remove((proc, log))
                    if proc.returncode != 0:
                        raise SystemExit(f"{self.name}: {' '.join(proc.args[:3])} failed (exit {proc.returncode}); see {log}")

    def stage(self, name: str, fn: Callable[[], bool]) -> None:
        """Run one stage; its wall time is recorded only when it computed something."""
        t0 = time.perf_counter()
        did = fn()
        if did:
            self.results.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 1)
            self.save()
        print(f"stage {name}: {'done in %.0f s' % (time.perf_counter() - t0) if did else 'outputs present, skipped'}",
              flush=True)
