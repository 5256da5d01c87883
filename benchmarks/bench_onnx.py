"""onnxruntime (CPU) against PyTorch: encode/decode throughput and equality per modality, in one run.

    python benchmarks/bench_onnx.py            # writes its section of BENCHMARKS.md
    python benchmarks/bench_onnx.py --quick    # 5 repeats, prints only

Each modality's default tokenizer (random init, seed 0) is exported with :func:`fsqtok.export.export_onnx`
and both runtimes encode and decode the same real media (fsqtok's built-in samples) at 1 thread:
the calls alternate (PyTorch, onnxruntime, PyTorch, ...) so machine load hits both alike, and each
figure is the median of ``--repeat`` calls. Equality is counted over every index; a mismatch is
reported with how many of the mismatched positions lie within 1e-3 grid steps of a rounding boundary
in PyTorch (the test suite's criterion, :mod:`fsqtok.export.agreement`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import machine_line, write_section  # noqa: E402

from fsqtok.datasets.samples import sample_audio, sample_depth, sample_images, sample_videos  # noqa: E402
from fsqtok.export import OnnxTokenizer, export_onnx  # noqa: E402
from fsqtok.export.agreement import agreement  # noqa: E402
from fsqtok.tokenizers import AudioTokenizer, DepthTokenizer, ImageTokenizer, VideoTokenizer  # noqa: E402

# modality -> (tokenizer class, media timed, more media for the equality count (one encode each), what is timed)
CASES = {
    "image": (ImageTokenizer, lambda: sample_images(4, size=128, split="val"),
              lambda: sample_images(32, size=128, seed=1), "4 photos 128x128"),
    "depth": (DepthTokenizer, lambda: sample_depth(4, size=128, split="val"),
              lambda: sample_depth(32, size=128, seed=1), "4 rendered depth maps 128x128"),
    "audio": (AudioTokenizer, lambda: sample_audio(1, seconds=5.0, split="val"),
              lambda: sample_audio(8, seconds=5.0, seed=1), "5 s of speech, 16 kHz"),
    "video": (VideoTokenizer, lambda: sample_videos(1, frames=17, size=64, split="val"),
              lambda: sample_videos(8, frames=17, size=64, seed=1), "17 frames 64x64"),
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
    return agreement(tok, x, got)[1]


def _equality(tok, ort_tok, media: list[torch.Tensor]) -> str:
    """``equal / total`` indices over ``media`` (and the mismatches not at a rounding boundary, if any)."""
    equal = total = unexplained = 0
    for x in media:
        indices, got = tok.encode(x), ort_tok.encode(x)
        equal += int((got == indices).sum())
        total += indices.numel()
        unexplained += 0 if torch.equal(got, indices) else _unexplained(tok, x, got)
    mismatch = "" if equal == total else f" ({unexplained} positions not at a boundary)"
    return f"{equal:,} / {total:,}{mismatch}"


def bench(name: str, repeat: int, folder: Path) -> str:
    klass, make_media, make_more, what = CASES[name]
    torch.manual_seed(0)
    tok = klass().eval()
    x = make_media()
    t0 = time.perf_counter()
    export_onnx(tok, folder / name)
    export_s = time.perf_counter() - t0
    ort_tok = OnnxTokenizer(folder / name, threads=1)
    equality = _equality(tok, ort_tok, [x, *make_more().split(4)])
    indices = tok.encode(x)
    decode_error = float((ort_tok.decode(indices) - tok.decode(indices)).abs().max())
    with torch.inference_mode():
        t_pt_enc, t_ort_enc, t_pt_dec, t_ort_dec = _median_alternating(
            [lambda: tok.encode(x), lambda: ort_tok.encode(x), lambda: tok.decode(indices),
             lambda: ort_tok.decode(indices)], repeat)
    ms = lambda t: f"{t * 1e3:.1f}"  # noqa: E731
    return (f"| {name} | {what} | {ms(t_pt_enc)} | {ms(t_ort_enc)} | {t_pt_enc / t_ort_enc:.2f} | {ms(t_pt_dec)} | "
            f"{ms(t_ort_dec)} | {t_pt_dec / t_ort_dec:.2f} | {equality} | "
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
        "onnxruntime (> 1: onnxruntime faster). Indices equal: over the timed input and 32 more photos or depth maps,",
        "8 more speech clips or videos (seed 1); decode difference on the timed input, in the output's unit",
        "(depth: metres).",
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
