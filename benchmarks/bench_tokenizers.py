"""Tokenizer encode/decode speed on the CPU against the peers users would pick, and against the machine's limit.

    python benchmarks/bench_tokenizers.py --write        # 1 and 2 threads, median of 5; writes BENCHMARKS.md
    python benchmarks/bench_tokenizers.py --quick --threads 1   # median of 3, prints only
    python benchmarks/bench_tokenizers.py --profile      # top operators of every encode/decode (markdown)
    python benchmarks/bench_tokenizers.py --compile      # ours eager against ours through tok.compile()

Inputs: 8 images 64x64, 10 s of 16 kHz audio, a 17x64x64 clip (random values: speed does not depend on
them). Peers (see :mod:`tokenizer_peers`): diffusers ``VQModel``, transformers ``EncodecModel`` (its
default and with ours' residual units) and Descript's DAC, each at the size of ours; video has no
installable peer. Every time is the median of ``--repeat`` samples taken round robin over ours and
the peers (:func:`common.alternating_medians`), so load changes on a shared machine hit all alike.
Ratios are peer time / ours (> 1: we are faster). The limit: achieved FLOP/s (convolutions and
matmuls counted by ``FlopCounterMode``) over the fp32 conv and matmul peaks measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import tokenizer_peers as peers
from common import alternating_medians, conv_peak, machine_line, matmul_peak, write_section

from fsqtok.tokenizers import AudioTokenizer, ImageTokenizer, VideoTokenizer

AUDIO_SECONDS = 10.0


def cases() -> list[tuple[str, str, list[peers.Model]]]:
    """(input, unit, [ours, *peers]) per modality; the unit's count per call turns times into rates."""
    torch.manual_seed(0)
    image, audio, video = ImageTokenizer().eval(), AudioTokenizer().eval(), VideoTokenizer().eval()
    x_img = torch.rand(8, 3, 64, 64) * 2 - 1
    x_wav = torch.randn(1, 1, int(AUDIO_SECONDS * audio.config.sample_rate)) * 0.1
    x_vid = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    with torch.no_grad():  # not inference mode: the FLOP counts run these inputs with autograd on
        try:
            dac = [peers.dac(audio, x_wav)]
        except ImportError:
            print("Descript DAC is not installed (pyproject.toml's [bench-dac] says how): its row is left out")
            dac = []
        return [
            ("image 64x64, batch 8", "img/s", [peers.ours(image, x_img), peers.vqmodel(image, x_img)]),
            (f"audio {AUDIO_SECONDS:.0f} s at 16 kHz", "x real time",
             [peers.ours(audio, x_wav), peers.encodec(audio, x_wav, None),
              peers.encodec(audio, x_wav, len(audio.config.dilations)), *dac]),
            ("video 17x64x64", "frames/s", [peers.ours(video, x_vid)]),
        ]


UNITS = {"img/s": 8, "x real time": AUDIO_SECONDS, "frames/s": 17}


def count_flops(fn) -> int:
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def speed_rows(name: str, unit: str, models: list[peers.Model], repeat: int) -> tuple[list[str], dict]:
    """Peer rows (or ours alone) and the medians, all timed round robin in one go."""
    fns = {f"{i}{d}": getattr(m, d) for i, m in enumerate(models) for d in ("encode", "decode")}
    with torch.inference_mode():
        t = alternating_medians(fns, repeat=repeat)
    n = UNITS[unit]
    rate = f"{n / t['0encode']:.0f} {unit} | {n / t['0decode']:.0f} {unit}"
    rows = [f"| {name} | {m.name} ({m.params}) | {rate} | {t[f'{i}encode'] / t['0encode']:.2f}x | "
            f"{t[f'{i}decode'] / t['0decode']:.2f}x |" for i, m in enumerate(models) if i]
    if not rows:
        rows = [f"| {name} | none installable | {rate} | - | - |"]
    return rows, t


def model_flops(models: list[peers.Model]) -> list[dict[str, int]]:
    return [{d: count_flops(getattr(m, f"flops_{d}")) for d in ("encode", "decode")} for m in models]


def limit_rows(name: str, models: list[peers.Model], t: dict, flops: list[dict], peaks: tuple[float, float]) -> list[str]:
    """Achieved GFLOP/s of each model's encode and decode as a share of the measured peaks."""
    rows = []
    for i, m in enumerate(models):
        cells = []
        for d in ("encode", "decode"):
            rate = flops[i][d] / t[f"{i}{d}"]
            cells.append(f"{flops[i][d] / 1e9:.2f} | {rate / 1e9:.1f} | {rate / peaks[0]:.0%} | {rate / peaks[1]:.0%}")
        rows.append(f"| {name} | {'ours' if i == 0 else 'peer'}: {m.name} | {' | '.join(cells)} |")
    return rows


def shortfalls(models: list[peers.Model], t: dict, flops: list[dict]) -> list[str]:
    """For each peer row under 1.5x: the speed ratio split into work (FLOPs) and efficiency (FLOP/s)."""
    notes = []
    for i, m in enumerate(models[1:], start=1):
        for d in ("encode", "decode"):
            ratio = t[f"{i}{d}"] / t[f"0{d}"]
            if ratio < 1.5:
                work = flops[i][d] / flops[0][d]
                notes.append(f"- {m.name} {d}: {ratio:.2f}x = the peer's work / ours ({work:.2f}x the FLOPs) "
                             f"x our FLOP/s / the peer's ({ratio / work:.2f}x).")
    return notes


def bench(threads: int, repeat: int) -> list[str]:
    torch.set_num_threads(threads)
    peaks = (conv_peak(), matmul_peak())
    speed = ["| input | peer | ours encode | ours decode | peer/ours encode time | peer/ours decode time |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    limit = ["| input | model | encode GFLOP | encode GFLOP/s | of conv peak | of matmul peak | "
             "decode GFLOP | decode GFLOP/s | of conv peak | of matmul peak |", "| --- | --- |" + " ---: |" * 8]
    measured, notes = [], []
    for name, unit, models in cases():
        rows, t = speed_rows(name, unit, models, repeat)
        speed += rows
        measured.append((name, models, t, model_flops(models)))
        notes += shortfalls(*measured[-1][1:])
        print("\n".join(rows), flush=True)
    peaks = (max(peaks[0], conv_peak()), max(peaks[1], matmul_peak()))  # measured again after the models
    for args in measured:
        limit += limit_rows(*args, peaks)
    return [f"### {threads} thread(s)", "", f"`python benchmarks/bench_tokenizers.py --threads {threads} --repeat "
            f"{repeat}` on {machine_line()}.", "", *speed, "",
            "Rows under 1.5x, split into the work each side does and how fast each does it:", "", *notes, "",
            f"Against the limit: fp32 conv peak {peaks[0] / 1e9:.1f} GFLOP/s, matmul peak {peaks[1] / 1e9:.1f} GFLOP/s "
            "(best of wide convs / square `torch.mm`, before and after the models, same run).", "", *limit, ""]


def profiles(top: int) -> list[str]:
    """Markdown tables of the ``top`` operators by self CPU time of each default encode and decode."""
    out = []
    for name, _, models in cases():
        for d in ("encode", "decode"):
            fn = getattr(models[0], d)
            fn()
            t0 = time.perf_counter()
            fn()
            calls = max(3, int(2.0 / (time.perf_counter() - t0)))  # about 2 s of calls
            with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(calls):
                    fn()
            events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
            total = sum(e.self_cpu_time_total for e in events)
            cells = ", ".join(f"{e.key.removeprefix('aten::')} {e.self_cpu_time_total / total:.0%}" for e in events[:top])
            out.append(f"| {name} {d} | {total / calls / 1e3:.0f} ms | {cells} |")
            print(out[-1], flush=True)
    return ["| call | self CPU per call | top operators (share of self CPU time) |", "| --- | ---: | --- |", *out]


def compiled(repeat: int) -> list[str]:
    """Ours eager against a deep copy of ours after ``tok.compile()``; the tokens are compared too."""
    rows = ["| input | eager/compiled encode time | eager/compiled decode time | tokens moved |",
            "| --- | ---: | ---: | ---: |"]
    for name, _, models in cases():
        eager = models[0]
        fast = peers.ours(copy.deepcopy(eager.module).compile(), eager.x)
        with torch.inference_mode():
            moved = int((fast.encode() != eager.encode()).sum())
            t = alternating_medians({"ee": eager.encode, "ed": eager.decode, "ce": fast.encode, "cd": fast.decode},
                                    repeat=repeat)
        rows.append(f"| {name} | {t['ee'] / t['ce']:.2f}x | {t['ed'] / t['cd']:.2f}x | {moved} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=5, help="alternating samples per figure (median)")
    parser.add_argument("--quick", action="store_true", help="3 samples")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true", help="print top-operator profiles instead")
    parser.add_argument("--compile", action="store_true", help="print eager against tok.compile() instead")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    repeat = 3 if args.quick else args.repeat
    threads = [int(n) for n in args.threads.split(",")]
    if args.profile or args.compile:
        torch.set_num_threads(threads[0])
        print("\n".join(profiles(8) if args.profile else compiled(repeat)))
        return
    lines = ["## Tokenizers: default configs against peers at the same compression (CPU)", "",
             "Peers are randomly initialised (speed does not depend on the weights) and sized like ours; "
             "each figure is the median of alternating samples (see the script's docstring).", ""]
    for n in threads:
        lines += bench(n, repeat)
    if args.write:
        write_section("bench_tokenizers", "\n".join(lines))
        print("wrote BENCHMARKS.md")
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
