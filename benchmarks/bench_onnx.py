"""onnxruntime (CPU) against PyTorch: encode/decode throughput and equality per modality, in one run.

    python benchmarks/bench_onnx.py            # writes its section of BENCHMARKS.md
    python benchmarks/bench_onnx.py --quick    # 5 repeats, prints only

Each modality's default tokenizer (random init, seed 0) is exported with :func:`fsqtok.export.export_onnx`
and both runtimes encode and decode the same real media (fsqtok's built-in samples) at 1 thread:
the calls alternate (PyTorch, onnxruntime, PyTorch, ...) so machine load hits both alike, and each
figure is the median of ``--repeat`` calls. Equality is counted over every index; a mismatch is
reported with how many of the mismatched positions lie within 1e-3 grid steps of a rounding boundary
in PyTorch (the test suite's criterion, ``tests/export/onnx_checks.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from common import machine_line, write_section  # noqa: E402

from fsqtok.data.samples import sample_audio, sample_depth, sample_images, sample_videos  # noqa: E402
from fsqtok.export import OnnxTokenizer, export_onnx  # noqa: E402
from fsqtok.tokenizers import AudioTokenizer, DepthTokenizer, ImageTokenizer, VideoTokenizer  # noqa: E402

# modality -> (tokenizer class, real media, what one item is)
CASES = {
    "image": (ImageTokenizer, lambda: sample_images(4, size=128, split="val"), "4 photos 128x128"),
    "depth": (DepthTokenizer, lambda: sample_depth(4, size=128, split="val"), "4 rendered depth maps 128x128"),
    "audio": (AudioTokenizer, lambda: sample_audio(1, seconds=5.0, split="val"), "5 s of speech, 16 kHz"),
    "video": (VideoTokenizer, lambda: sample_videos(1, frames=17, size=64, split="val"), "17 frames 64x64"),
}


def _median_alternating(calls: list, repeat: int) -> list[float]:
    """Median seconds of each call, timing them in turn ``repeat`` times after one warm-up round."""
    for call in calls:
        call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for call, out in zip(calls, samples):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples]


def _unexplained(tok, x, got) -> int:
    sys.path.insert(0, str(ROOT.parent / "tests" / "export"))
    from onnx_checks import agreement

    return agreement(tok, x, got)[1]


def bench(name: str, repeat: int, folder: Path) -> str:
    klass, make_media, what = CASES[name]
    torch.manual_seed(0)
    tok = klass().eval()
    x = make_media()
    t0 = time.perf_counter()
    export_onnx(tok, folder / name)
    export_s = time.perf_counter() - t0
    ort_tok = OnnxTokenizer(folder / name, threads=1)
    indices = tok.encode(x)
    got = ort_tok.encode(x)
    equal = int((got == indices).sum())
    mismatch = "" if equal == indices.numel() else f" ({_unexplained(tok, x, got)} not at a boundary)"
    decode_error = float((ort_tok.decode(indices) - tok.decode(indices)).abs().max())
    with torch.inference_mode():
        t_pt_enc, t_ort_enc, t_pt_dec, t_ort_dec = _median_alternating(
            [lambda: tok.encode(x), lambda: ort_tok.encode(x), lambda: tok.decode(indices),
             lambda: ort_tok.decode(indices)], repeat)
    ms = lambda t: f"{t * 1e3:.1f}"  # noqa: E731
    return (f"| {name} | {what} | {ms(t_pt_enc)} | {ms(t_ort_enc)} | {t_pt_enc / t_ort_enc:.2f} | {ms(t_pt_dec)} | "
            f"{ms(t_ort_dec)} | {t_pt_dec / t_ort_dec:.2f} | {equal:,} / {indices.numel():,}{mismatch} | "
            f"{decode_error:.1e} | {export_s:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per figure (median), >= 5")
    parser.add_argument("--quick", action="store_true", help="5 repeats, print only")
    parser.add_argument("--modalities", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    repeat = 5 if args.quick else max(5, args.repeat)
    torch.set_num_threads(1)
    import onnxruntime

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.modalities:
            rows.append(bench(name, repeat, Path(tmp)))
            print(rows[-1], flush=True)
    cmd = "python benchmarks/bench_onnx.py" + ("" if args.repeat == 7 else f" --repeat {args.repeat}")
    body = "\n".join([
        f"`{cmd}`. {machine_line()}, onnxruntime {onnxruntime.__version__} (CPU, 1 thread). Default tokenizers,",
        f"random init; median of {repeat} alternating calls per figure; times in ms per call; speed-up = PyTorch / "
        "onnxruntime (> 1: onnxruntime faster).",
        "",
        "| modality | input | PyTorch encode | ORT encode | speed-up | PyTorch decode | ORT decode | speed-up | "
        "indices equal | decode max abs diff | export (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ])
    if not args.quick:
        write_section("onnx", body)
    print(body)


if __name__ == "__main__":
    main()
