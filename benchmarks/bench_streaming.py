"""Streaming audio: latency, real-time factor at one thread, what the fixed blocks cost the whole
pass, and how many tokens the blocks change against the one-call pass, on the bundled real speech.

    OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py            # writes the BENCHMARKS.md section
    OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py --quick    # prints only

"Before" is the one-call pass that ``encode``/``decode`` ran before the blocks (the same networks
called once on the whole input, still what ``forward`` runs); "after" is ``encode``/``decode`` now.
Times are medians of ``--repeat`` runs in one process at 1 torch thread, in this process's CPU
time (``time.process_time``: on a shared machine wall clock counts other jobs' turns).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F

from common import machine_line, write_section  # noqa: E402

from fsqtok.datasets.samples import _speech  # noqa: E402
from fsqtok.tokenizers import AudioConfig, AudioTokenizer  # noqa: E402

CONFIGS = {  # default-size tokenizers (AudioConfig() widths); 44.1 kHz with DAC's 44 kHz hop of 512
    "16 kHz": AudioConfig(),
    "44.1 kHz": AudioConfig(sample_rate=44100, strides=(2, 4, 8, 8)),
}
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py"


def build(config: AudioConfig, seed: int = 0, block_tokens: int | None = None) -> AudioTokenizer:
    torch.manual_seed(seed)
    if block_tokens is not None:
        config = dataclasses.replace(config, block_tokens=block_tokens)
    return AudioTokenizer(config).eval()


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


@torch.no_grad()
def one_call_encode(tok: AudioTokenizer, x: torch.Tensor) -> torch.Tensor:
    """The pre-block whole pass: the encoder called once on the hop-padded input."""
    return tok._quantize(tok.encoder(F.pad(x, (0, -x.shape[-1] % tok.hop_length))))


@torch.no_grad()
def one_call_decode(tok: AudioTokenizer, idx: torch.Tensor) -> torch.Tensor:
    return tok.decoder(tok.quantizer.decode_indices(idx))


def stream_seconds(tok: AudioTokenizer, x: torch.Tensor, push_samples: int) -> tuple[float, float]:
    """Seconds to stream-encode ``x`` in pushes of ``push_samples`` and stream-decode it a token at a time."""
    t0 = time.process_time()
    enc = tok.stream_encoder()
    idx = torch.cat([*(enc.push(c) for c in x.split(push_samples, dim=-1)), enc.flush()], dim=-1)
    t1 = time.process_time()
    dec = tok.stream_decoder()
    torch.cat([*(dec.push(c) for c in idx.split(1, dim=-1)), dec.flush()], dim=-1)
    return t1 - t0, time.process_time() - t1


def latency_rows(name: str, tok: AudioTokenizer, x: torch.Tensor, repeat: int) -> str:
    sr, hop, k = tok.config.sample_rate, tok.hop_length, tok.config.block_tokens
    push = sr // 100  # 10 ms pushes
    runs = [stream_seconds(tok, x, push) for _ in range(repeat)]
    seconds = x.shape[-1] / sr
    enc_rtf = statistics.median(r[0] for r in runs) / seconds
    dec_rtf = statistics.median(r[1] for r in runs) / seconds
    params = sum(p.numel() for p in tok.parameters()) / 1e6
    return (f"| {name} | {params:.2f} M, hop {hop}, {sr / hop:.4g} tokens/s, block_tokens={k} | "
            f"{k * hop} samples ({1000 * k * hop / sr:.1f} ms) | {k} tokens -> {k * hop} samples | "
            f"{enc_rtf:.4f} ({1 / enc_rtf:.0f}x) | {dec_rtf:.4f} ({1 / dec_rtf:.0f}x) |")


def cost_rows(name: str, config: AudioConfig, x: torch.Tensor, repeat: int, runs: list[tuple[int, int]]) -> list[str]:
    """One row per ``(block_tokens, batch)``: the batch repeats the clip."""
    rows, clip = [], x
    for k, batch in runs:
        x = clip.expand(batch, -1, -1).contiguous()
        tok = build(config, block_tokens=k)
        idx = tok.encode(x)
        enc = [median_seconds(lambda: one_call_encode(tok, x), repeat), median_seconds(lambda: tok.encode(x), repeat)]
        dec = [median_seconds(lambda: one_call_decode(tok, idx), repeat), median_seconds(lambda: tok.decode(idx), repeat)]
        rows.append(f"| {name} | {k} | {batch} | {1000 * enc[0]:.0f} / {1000 * enc[1]:.0f} ms ({enc[1] / enc[0]:.2f}x) | "
                    f"{1000 * dec[0]:.0f} / {1000 * dec[1]:.0f} ms ({dec[1] / dec[0]:.2f}x) |")
    return rows


def agreement_rows(name: str, config: AudioConfig, x: torch.Tensor, seeds: list[int]) -> list[str]:
    rows = []
    for seed in seeds:
        tok = build(config, seed)
        latents = []  # the encoder's blocks during encode
        hook = tok.encoder.register_forward_hook(lambda m, a, out: latents.append(out))
        idx = tok.encode(x)
        hook.remove()
        with torch.no_grad():
            plain = tok.encoder(F.pad(x, (0, -x.shape[-1] % tok.hop_length)))
        latent_diff = float((torch.cat(latents, dim=-1)[..., : plain.shape[-1]] - plain).abs().max())
        diff = idx != one_call_encode(tok, x)  # (1, S, N)
        n, positions = int(diff.sum()), diff.any(dim=1)[0].nonzero()[:, 0].tolist()
        stages = [int(diff[0, :, p].nonzero()[0, 0]) + 1 for p in positions]  # the first stage that differs
        y, y1 = tok.decode(idx), one_call_decode(tok, idx)
        rows.append(f"| {name} | {seed} | {n} of {idx.numel()} ({n / idx.numel():.1e}) | {len(positions)} of {idx.shape[-1]} | "
                    f"{', '.join(map(str, stages)) or '-'} | {latent_diff:.1e} | "
                    f"{float((y == y1).float().mean()):.4f} | {float((y - y1).abs().max()):.1e} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="speech timed for the real-time factor and the cost")
    ap.add_argument("--repeat", type=int, default=5, help="runs per median")
    ap.add_argument("--quick", action="store_true", help="fewer configurations; print, do not write BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs, seeds = ([(4, 1)], [0]) if args.quick else ([(1, 1), (4, 1), (16, 1), (4, 8)], [0, 1, 2])
    lat, cost, agree = [], [], []
    for name, config in CONFIGS.items():
        speech = _speech(config.sample_rate)[None, None]  # the whole 30 s conversation, (1, 1, T)
        x = speech[..., : int(args.seconds * config.sample_rate)]
        lat.append(latency_rows(name, build(config), x, args.repeat))
        cost += cost_rows(name, config, x, args.repeat, runs)
        agree += agreement_rows(name, config, speech, seeds)
        print(lat[-1], *cost[-len(runs):], *agree[-len(seeds):], sep="\n", flush=True)
    body = "\n".join([
        "## Streaming audio, bit-exact (CPU)", "",
        f"`{COMMAND}` on {machine_line()}; the bundled real speech (30 s conversation), seeded",
        "untrained default-size tokenizers (`AudioConfig()` widths; no trained audio tokenizer exists yet).",
        "Encode and decode run in fixed blocks of `block_tokens` tokens with carried state, whole or streamed,",
        "so a stream's tokens and samples equal `encode`'s and `decode`'s bit for bit for any cutting",
        "(tests/tokenizers/test_audio_stream.py). Both networks are causal with no lookahead: the latency is",
        "the block. Real-time factor = processing time / audio time (lower is better), encoder fed 10 ms",
        f"pushes, decoder one token at a time, {args.seconds:g} s of speech, median of {args.repeat}, CPU time of this process.", "",
        "| rate | tokenizer | samples in before the first tokens | tokens in before the first samples | stream encode RTF | stream decode RTF |",
        "| --- | --- | --- | --- | ---: | ---: |", *lat, "",
        f"What the blocks cost the whole pass ({args.seconds:g} s of speech per batch item): one call before / blocks",
        f"after, CPU time, median of {args.repeat}. Per-block overhead dominates at batch 1; at batch 8 the blocks' small",
        "working set wins.", "",
        "| rate | block_tokens | batch | encode | decode |", "| --- | ---: | ---: | ---: | ---: |", *cost, "",
        "Tokens the blocks change against the one-call pass (the whole 30 s, seeded untrained weights), the",
        "positions they sit at and the first stage changed there (a flip in stage k changes the residual, so",
        "the later stages at that position follow), the largest difference of the encoder's latents, and the",
        "decoded samples: fraction bit-identical and largest difference.", "",
        "| rate | seed | tokens changed (all stages) | positions changed | first stage changed | latent max abs difference | samples bit-identical | sample max abs difference |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |", *agree,
    ])
    if args.quick:
        print(body)
    else:
        write_section("bench_streaming", body)
        print("wrote the bench_streaming section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
