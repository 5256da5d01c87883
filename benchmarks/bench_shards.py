"""Index-shard throughput: end-to-end `fsqtok tokenize` vs raw `tok.encode` on the same batches,
and ShardDataset random access vs a plain numpy memmap of the same tokens.

    .venv/bin/python benchmarks/bench_shards.py [--n 256] [--size 64] [--batch-size 32]

Writes its figures into BENCHMARKS.md (section bench_shards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, write_section  # noqa: E402

from fsqtok.data.samples import sample_images  # noqa: E402
from fsqtok.media import read_image, write_image  # noqa: E402
from fsqtok.shards import ShardDataset  # noqa: E402
from fsqtok.shards.tokenize import main as tokenize_main  # noqa: E402
from fsqtok.tokenizers import ImageTokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tok = ImageTokenizer().eval()
        tok.save_pretrained(d / "tok")
        imgs = sample_images(a.n, a.size, seed=0)
        (d / "imgs").mkdir()
        for i in range(a.n):
            write_image(d / "imgs" / f"{i:05d}.png", imgs[i])
        # raw encoder forward on the same batches (decoded once, outside the timing)
        keys = sorted(p.name for p in (d / "imgs").iterdir())
        x = torch.stack([read_image(d / "imgs" / k) for k in keys])
        def raw_pass() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                for b in range(0, a.n, a.batch_size):
                    tok.encode(x[b:b + a.batch_size])
                return time.perf_counter() - t0

        raw_pass()  # warm-up
        tokens_per_sample = int(np.prod(tok.tokens_shape((1, 3, a.size, a.size))[1:]))
        # end-to-end: decode (DataLoader workers) + encode + Parquet writing + manifest
        args = ["-t", str(d / "tok"), "--data", str(d / "imgs"), "-o", str(d / "out"), "--batch-size",
                str(a.batch_size), "--shard-size", str(4 * a.batch_size), "--num-workers", str(a.num_workers),
                "--device", "cpu", "--quiet"]
        t0 = time.perf_counter()
        assert tokenize_main(args) == 0
        e2e_s = time.perf_counter() - t0
        raw_s = min(raw_pass() for _ in range(2))  # measured in the same run, after the end-to-end pass
        # reader: random access over all rows vs numpy memmap of the same tokens
        ds = ShardDataset(d / "out")
        arr = np.stack([ds[i]["tokens"].numpy().astype(np.uint16) for i in range(len(ds))])
        mm_path = d / "tokens.npy"
        np.save(mm_path, arr)
        mm = np.load(mm_path, mmap_mode="r")
        order = np.random.default_rng(0).permutation(len(ds))
        reps = max(1, 20000 // len(ds))
        t0 = time.perf_counter()
        for _ in range(reps):
            for i in order:
                ds[int(i)]["tokens"]
        reader_rps = reps * len(ds) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(reps):
            for i in order:
                torch.from_numpy(mm[int(i)].astype(np.int64))
        mm_rps = reps * len(ds) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        ShardDataset(d / "out")
        open_s = time.perf_counter() - t0
    raw_sps, e2e_sps = a.n / raw_s, a.n / e2e_s
    cmd = "`.venv/bin/python benchmarks/bench_shards.py" + (f" --n {a.n}" if a.n != 256 else "") + "`"
    body = f"""## Index shards (`fsqtok tokenize`, `fsqtok.shards`)

{cmd} on {machine_line()}. Default tiny `ImageTokenizer`, {a.n} real {a.size}x{a.size} PNGs,
batch {a.batch_size}, {a.num_workers} DataLoader workers, CPU.

| path | samples/s | tokens/s |
|---|---:|---:|
| raw `tok.encode` on the same batches (pre-decoded) | {raw_sps:,.0f} | {raw_sps * tokens_per_sample:,.0f} |
| end-to-end `fsqtok tokenize` (decode + encode + Parquet + manifest, incl. start-up) | {e2e_sps:,.0f} | {e2e_sps * tokens_per_sample:,.0f} |
| end-to-end / raw | {e2e_sps / raw_sps:.0%} | |

| reader | rows/s (random order) |
|---|---:|
| `ShardDataset[i]` (int64 tensor) | {reader_rps:,.0f} |
| numpy memmap of the same tokens (int64 tensor) | {mm_rps:,.0f} |

Opening `ShardDataset` ({a.n} rows) takes {open_s * 1000:.1f} ms.
"""
    print(body)
    if not a.no_write:
        write_section("bench_shards", body)


if __name__ == "__main__":
    main()
