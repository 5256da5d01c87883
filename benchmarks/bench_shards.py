"""Index-shard throughput, measured in one run:

1. end-to-end `fsqtok tokenize` (DataLoader decode + encode + Parquet + manifest) against the
   raw `tok.encode` forward on the same batches of the same pre-decoded images;
2. scaling from 1 to 2 processes (`accelerate launch --multi_gpu`, CPU/gloo);
3. ShardDataset / ShardStream read throughput against a plain numpy memmap of the same tokens.

    .venv/bin/python benchmarks/bench_shards.py [--quick] [--n 1024] [--size 64] [--batch-size 32] [--no-write]

Writes its figures into BENCHMARKS.md (between the bench_shards markers).

Length: about 350 lines, over the ~300 guideline: a third is the prose of its BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import machine_line, write_section

from fsqtok.datasets.samples import sample_images
from fsqtok.media import read_image, write_image
from fsqtok.shards import ShardDataset, ShardStream
from fsqtok.data import FolderSource, Preprocess, SourceDataset
from fsqtok.shards import tokenize
from fsqtok.shards.cli import build_parser, job_from_args
from fsqtok.shards.encoders import encoder_layout, start_encoder_thread
from fsqtok.shards.writer import write_shard
from fsqtok.tokenizers import ImageConfig, ImageTokenizer

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "tokenize_dataset.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_pass(tok, x: torch.Tensor, batch: int, pool: ThreadPoolExecutor | None = None) -> float:
    """Seconds for `tok.encode` over x in batches (denormals flushed, as the pipeline does on CPU): in this
    thread on every torch thread (what a user calls), or ``pool``'s single-threaded encoders at once."""
    def encode(b: int) -> None:
        with torch.inference_mode():
            tok.encode(x[b:b + batch])

    torch.set_flush_denormal(True)
    try:
        t0 = time.perf_counter()
        if pool is None:
            for b in range(0, len(x), batch):
                encode(b)
        else:
            list(pool.map(encode, range(0, len(x), batch)))
        return time.perf_counter() - t0
    finally:
        torch.set_flush_denormal(False)


def _subprocess_run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds incl. start-up, samples/s the run reported for its pipeline)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: exit {r.returncode}: {r.stderr[-1500:]}")
    rate = float(re.search(r"([\d.]+) samples/s", r.stdout).group(1))
    return wall, rate


# the tiny default (what tests use) and a mid-size f=8 model whose encoder costs what a real one does
MODELS = {
    "tiny": ImageConfig(),
    "mid": ImageConfig(base_channels=32, channel_mult=(1, 2, 2, 4), num_res_blocks=2),
}


def _end_to_end(name: str, tok_dir: Path, x: torch.Tensor, base: list[str], workers: list[int], a: argparse.Namespace,
                d: Path) -> tuple[dict[int, dict[str, float]], float, float]:
    """Best-of-``a.repeat`` end-to-end runs per worker count, interleaved with both raw passes
    (raw, raw pool, e2e w0, raw, raw pool, e2e w1, ...), since on a shared machine other processes only
    ever add time. Returns those runs and the best raw throughputs (samples/s) of the same tokenizer:
    `tok.encode` on every torch thread, and as many single-threaded encoders as the pipeline runs."""
    tok = ImageTokenizer.from_pretrained(tok_dir).eval()
    threads = torch.get_num_threads()
    encoders, _ = encoder_layout(torch.device("cpu"), None)
    with ThreadPoolExecutor(encoders, initializer=start_encoder_thread, initargs=(torch.device("cpu"), 1)) as pool:
        def raw_passes() -> None:
            raw_s.append(_raw_pass(tok, x, a.batch_size))
            pool_s.append(_raw_pass(tok, x, a.batch_size, pool))
            torch.set_num_threads(threads)  # the pool's threads set the process-wide count

        raw_s, pool_s = [], []
        _raw_pass(tok, x[:a.batch_size], a.batch_size)  # warm-up
        raw_passes()
        e2e: dict[int, dict[str, float]] = {}
        for _ in range(a.repeat):
            for w in workers:
                out = d / f"out_{name}_w{w}"
                t0 = time.perf_counter()
                s = tokenize(job_from_args(build_parser().parse_args(["-t", str(tok_dir), *base, "-o", str(out),
                                                                      "--num-workers", str(w), "--overwrite"])))
                wall = time.perf_counter() - t0
                raw_passes()
                run = {"pipeline_sps": s["rows_written"] / s["elapsed_s"], "wall_sps": a.n / wall,
                       "encode_share": s["encode_s"] / encoders / s["elapsed_s"]}
                if w not in e2e or run["pipeline_sps"] > e2e[w]["pipeline_sps"]:
                    e2e[w] = run
    return e2e, a.n / min(raw_s), a.n / min(pool_s)


def _side_costs(d: Path, shards: Path, a: argparse.Namespace) -> tuple[float, float]:
    """CPU milliseconds per sample of decoding (what a worker does) and of writing ``shards``' rows again."""
    samples = SourceDataset(FolderSource(d / "imgs", "image"), Preprocess("image"))
    with torch.inference_mode():
        t0 = time.perf_counter()
        for i in range(a.n):
            samples[i]
        decode_ms = (time.perf_counter() - t0) * 1000 / a.n
    ref = ShardDataset(shards)
    tokens = ref.array()
    rows = [{"key": k, "tokens": tokens[i]} for i, k in enumerate(ref.keys)]
    t0 = time.perf_counter()
    for b in range(0, a.n, a.shard_size):
        write_shard(d / "write_cost", b // a.shard_size, rows[b:b + a.shard_size], [], tokens.dtype, "image")
    return decode_ms, (time.perf_counter() - t0) * 1000 / a.n


def _time_rows(fn, rows: np.ndarray, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        for i in rows:
            fn(int(i))
    return reps * len(rows) / (time.perf_counter() - t0)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="images (default 1024)")
    ap.add_argument("--size", type=int, default=64, help="image side (default 64)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=128)
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to measure (default 0,1,2)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the best counts (default 3)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1 vs 2 process runs")
    ap.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true",
                    help="a check in about a minute: 512 images, 0 and 2 workers, best of 2, no process scaling, "
                         "BENCHMARKS.md untouched")
    a = ap.parse_args()
    if a.quick:
        a.n, a.workers, a.repeat, a.no_scaling, a.no_write = 512, "0,2", 2, True, True
    return a


def _inputs(d: Path, a: argparse.Namespace) -> tuple[dict, dict[str, Path], torch.Tensor]:
    """Save each tokenizer and write ``a.n`` sample PNGs under ``d``; returns the tokenizers, their folders
    and the PNGs decoded once (``(n, 3, size, size)``, outside the timing)."""
    toks = {name: ImageTokenizer(config) for name, config in MODELS.items()}
    tok_dirs = {name: d / f"tok_{name}" for name in toks}
    for name, tok in toks.items():
        tok.save_pretrained(tok_dirs[name])
    imgs = sample_images(a.n, a.size, seed=0)
    (d / "imgs").mkdir()
    for i in range(a.n):
        write_image(d / "imgs" / f"{i:05d}.png", imgs[i])
    keys = sorted(p.name for p in (d / "imgs").iterdir())
    return toks, tok_dirs, torch.stack([read_image(d / "imgs" / k) for k in keys])


def _scaling(tok_dir: Path, base: list[str], d: Path, a: argparse.Namespace) -> list[tuple[str, float, float]]:
    """The same command as 1 process and as 2 processes (subprocesses, start-up included): best of ``a.repeat``
    as ``(label, samples/s incl. start-up, samples/s of the pipeline)``."""
    scaling = []
    args = ["-t", str(tok_dir), *base[:-1], "--num-workers", "1"]
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    runs = [("1 process, 2 torch threads", [sys.executable, str(SCRIPT)], dict(env)),
            ("1 process, 1 torch thread", [sys.executable, str(SCRIPT)], dict(env, OMP_NUM_THREADS="1")),
            ("2 processes, 1 torch thread each",
             [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", str(SCRIPT)],
             dict(env, OMP_NUM_THREADS="1"))]
    for label, cmd, env_i in runs:
        if "--main_process_port" in cmd:
            cmd[cmd.index("--main_process_port") + 1] = str(_free_port())
        best = None
        for rep in range(a.repeat):
            wall, rate = _subprocess_run([*cmd, *args, "-o", str(d / f"scale_{len(scaling)}_{rep}")], env_i)
            best = (wall, rate) if best is None or rate > best[1] else best
        scaling.append((label, a.n / best[0], best[1]))
    return scaling


def _reader(out: Path, d: Path) -> dict[str, Any]:
    """Random access and streaming of ``out`` against a numpy memmap of the same tokens (rows/s)."""
    t0 = time.perf_counter()
    ds = ShardDataset(out)
    open_ms = (time.perf_counter() - t0) * 1000
    grid = ds.array()
    np.save(d / "tokens.npy", grid)
    mm = np.load(d / "tokens.npy", mmap_mode="r")
    order = np.random.default_rng(0).permutation(len(ds))
    reps = max(1, 100_000 // len(ds))
    reader_rps = _time_rows(lambda i: ds[i]["tokens"], order, reps)
    mm_rps = _time_rows(lambda i: torch.from_numpy(mm[i].astype(np.int64)), order, reps)
    t0 = time.perf_counter()
    streamed = 0
    for _ in range(max(1, reps // 10)):
        for _row in ShardStream(out, seed=0):
            streamed += 1
    stream_rps = streamed / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(max(1, reps // 10)):
        for i in range(len(mm)):
            torch.from_numpy(mm[i].astype(np.int64))
    mm_seq_rps = max(1, reps // 10) * len(mm) / (time.perf_counter() - t0)
    return {"rows": len(ds), "grid": grid.shape[1:], "open_ms": open_ms, "reader_rps": reader_rps, "mm_rps": mm_rps,
            "stream_rps": stream_rps, "mm_seq_rps": mm_seq_rps}


def _report(a: argparse.Namespace, toks: dict, e2e: dict, decode_ms: float, write_ms: float,
            scaling: list[tuple[str, float, float]], rd: dict[str, Any]) -> str:
    """The BENCHMARKS.md section. Long (about 100 lines): it is the section's prose, one f-string."""
    cmd = "`.venv/bin/python benchmarks/bench_shards.py" + (f" --n {a.n}" if a.n != 1024 else "") + "`"
    cores = os.cpu_count() or 1
    encoders = encoder_layout(torch.device("cpu"), None)[0]
    table, verdicts = [], []
    for name, (runs, raw_sps, pool_sps) in e2e.items():
        tps = int(np.prod(toks[name].tokens_shape((1, 3, a.size, a.size))[1:]))
        table.append(f"| {name}: raw `tok.encode`, same batches, one at a time | {raw_sps:,.0f} | {raw_sps * tps:,.0f} "
                     f"| 100% | {raw_sps / pool_sps:.0%} | | |")
        table.append(f"| {name}: raw `tok.encode`, {encoders} batches at once, 1 thread each | {pool_sps:,.0f} | "
                     f"{pool_sps * tps:,.0f} | {pool_sps / raw_sps:.0%} | 100% | | |")
        table += [f"| {name}: end-to-end, {w} decode worker(s) | {v['pipeline_sps']:,.0f} | "
                  f"{v['pipeline_sps'] * tps:,.0f} | {v['pipeline_sps'] / raw_sps:.0%} | {v['pipeline_sps'] / pool_sps:.0%} "
                  f"| {v['encode_share']:.0%} | {v['wall_sps']:,.0f} |" for w, v in runs.items()]
        share = max(v["pipeline_sps"] for v in runs.values()) / raw_sps
        pool_ms = 1000 / pool_sps  # per sample, all cores encoding
        ceiling = (1000 / raw_sps) / (pool_ms + (decode_ms + write_ms) / cores)
        verdicts.append(f"- **{name}** ({sum(p.numel() for p in toks[name].parameters()) / 1e6:.2f} M parameters, "
                        f"`tok.encode` {1000 / raw_sps:.2f} ms/sample, {pool_ms:.2f} with {encoders} encoders): best "
                        f"{share:.0%} of raw `tok.encode`, target {'reached' if share >= 0.9 else 'NOT reached'}; "
                        f"perfect overlap on {cores} cores would cap it at about {ceiling:.0%}.")
    at_once = " and ".join(f"{pool / raw:.0%} ({name})" for name, (_, raw, pool) in e2e.items())
    rows = "\n".join(table)
    verdict = "\n".join(verdicts)
    body = f"""## Index shards (`fsqtok tokenize`, `fsqtok.shards`)

{cmd} on {machine_line()}. {a.n} real {a.size}x{a.size} PNGs (`fsqtok.datasets.samples`), batch
{a.batch_size}, shards of {a.shard_size}, CPU, uint16 tokens. Two `ImageTokenizer`s: **tiny**, the
default config (f=8 with 16 base channels, 64 tokens per image), and **mid**, f=8 with 32 base
channels and 2 residual blocks per level (64 tokens per image), whose encoder costs about what a
real tokenizer's does per pixel on this CPU.

**End-to-end against the raw encoder**, in one run: two raw passes of `tok.encode` over the same
batches of the same images decoded beforehand, timed between the end-to-end runs: one batch at a
time on every torch thread (what a user's loop does), and {encoders} batches at once on single-threaded
threads (how `fsqtok tokenize` runs its encoders on a CPU, `fsqtok.shards.encoders`); every
configuration runs {a.repeat} times and the best run counts (other jobs on the machine only add time).
"Pipeline" time runs from the first batch to the last shard written (decode in workers or in the
main thread, encode, Parquet + sha256 in a background thread); "incl. start-up" adds loading the
tokenizer, listing the files and the manifest. "Time in `encode`" is the encoders' busy share.

| path | samples/s | tokens/s | of raw `tok.encode` | of raw, {encoders} at once | time in `encode` | samples/s incl. start-up |
|---|---:|---:|---:|---:|---:|---:|
{rows}

Target >= 90% of raw forward throughput:

{verdict}

Per sample, decoding a PNG (what a worker does: read, convert, check) costs {decode_ms:.2f} ms of
CPU and writing it to Parquet with its checksum {write_ms:.3f} ms. With no spare core that work
takes its share of the cores the encoders use, which gives the cap above even with perfect overlap.
The encoders are single-threaded and independent, so decoding that preempts one delays only that
batch; one encoder spread over every torch thread instead stalls at every operator's barrier
while one of its threads waits for a core (on this shared machine that costs 2-10x). The price of
single-threaded encoders is cache: {encoders} batches in flight hold {encoders}x the activations; at this batch
size the raw pass {encoders} at once runs at {at_once} of the speed of one at a time.
With a GPU the encoder leaves the CPU to the decode workers, and the "time in `encode`" column is
the figure that carries over.
"""
    if scaling:
        one = scaling[0][2]
        body += f"""
**Processes** (the script as a subprocess, 1 decode worker per process, best of {a.repeat}; samples/s
as the run reports it for its pipeline, all ranks together, and over the whole command incl. start-up):

| run | samples/s (pipeline) | samples/s incl. start-up | vs 1 process |
|---|---:|---:|---:|
""" + "\n".join(f"| {label} | {rate:,.0f} | {wall:,.1f} | {rate / one:.2f}x |" for label, wall, rate in scaling) + f"""

Both processes share the same 2 cores here. The pipeline rate counts all ranks from the first
batch to the last shard; start-up (an interpreter, the tokenizer and the gloo group per process)
is paid on top, so at {a.n} samples the whole command with 2 processes runs at {scaling[2][1] / scaling[0][1]:.2f}x
the 1-process command. "1 process, 1 thread" against "2 processes" shows the per-process
scaling that a machine with a core or GPU per process gets.
"""
    body += f"""
**Reader** ({rd['rows']} rows, {rd['grid']} grids; opening `ShardDataset` takes {rd['open_ms']:.1f} ms):

| access | rows/s |
|---|---:|
| `ShardDataset[i]`, random order (int64 tensor) | {rd['reader_rps']:,.0f} |
| numpy memmap `mm[i]` of the same tokens, random order (int64 tensor) | {rd['mm_rps']:,.0f} |
| `ShardStream` (shuffled across shards, one epoch) | {rd['stream_rps']:,.0f} |
| numpy memmap, sequential | {rd['mm_seq_rps']:,.0f} |

`ShardDataset` reads the Parquet shards once into one `(N, *shape)` uint16 array; `ds[i]` is a
row of it, so random access is at par with a memmap (the extra cost is the row dict).
"""
    return body


def main() -> None:
    a = parse_args()
    workers = [int(w) for w in a.workers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        toks, tok_dirs, x = _inputs(d, a)
        base = ["--data", str(d / "imgs"), "--batch-size", str(a.batch_size),
                "--shard-size", str(a.shard_size), "--device", "cpu", "--quiet"]
        # 1. end-to-end vs raw, for each tokenizer, and the per-sample cost of what must hide behind it
        e2e = {name: _end_to_end(name, tok_dir, x, base, workers, a, d) for name, tok_dir in tok_dirs.items()}
        decode_ms, write_ms = _side_costs(d, d / f"out_tiny_w{workers[0]}", a)
        # 2. scaling: same command as 1 process and as 2 processes
        scaling = _scaling(tok_dirs["tiny"], base, d, a) if not a.no_scaling and ACCELERATE.exists() else []
        # 3. reader: random access and streaming against a numpy memmap of the same tokens
        rd = _reader(d / f"out_tiny_w{workers[0]}", d)
    body = _report(a, toks, e2e, decode_ms, write_ms, scaling, rd)
    print(body)
    if not a.no_write:
        write_section("bench_shards", body)


if __name__ == "__main__":
    main()
