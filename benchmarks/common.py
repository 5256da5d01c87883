"""Helpers shared by the benchmarks: a robust timer and the BENCHMARKS.md section writer."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path
from typing import Callable

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
