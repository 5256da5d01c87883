"""Tokenizer encode/decode throughput on the CPU, beside a peer at the same compression, in one run.

    python benchmarks/bench_tokenizers.py            # writes its section of BENCHMARKS.md
    python benchmarks/bench_tokenizers.py --quick    # fewer repeats, prints only

* image: fsqtok's default ``ImageTokenizer`` (f=8, FSQ [8,5,5,5]) against diffusers'
  ``VQModel`` built with the same widths, depth, f=8 and a 1000-code VQ (random init);
* audio: the default ``AudioTokenizer`` (16 kHz, hop 320, 4 residual FSQ stages) against
  transformers' ``EncodecModel`` with the same hop, width and 4 codebooks of 1024 (random init),
  as a real-time factor (seconds of audio per second of compute);
* video: the default ``VideoTokenizer`` (4x8x8), frames per second; no peer is installable offline.
Ratios are peer time / ours (> 1: we are faster), measured in the same process.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from common import machine_line, time_call, write_section

from fsqtok.tokenizers import AudioTokenizer, ImageTokenizer, VideoTokenizer


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def bench_image(batch: int, size: int, repeat: int) -> list[str]:
    from diffusers import VQModel

    ours = ImageTokenizer().eval()
    cfg = ours.config
    widths = tuple(cfg.base_channels * m for m in cfg.channel_mult)
    peer = VQModel(
        down_block_types=("DownEncoderBlock2D",) * len(widths), up_block_types=("UpDecoderBlock2D",) * len(widths),
        block_out_channels=widths, layers_per_block=cfg.num_res_blocks, latent_channels=len(cfg.levels),
        num_vq_embeddings=1000, norm_num_groups=8, mid_block_add_attention=cfg.mid_attention,
    ).eval()
    x = torch.rand(batch, 3, size, size) * 2 - 1
    with torch.inference_mode():
        idx = ours.encode(x)
        t_ours_enc = time_call(lambda: ours.encode(x), repeat=repeat)
        t_ours_dec = time_call(lambda: ours.decode(idx), repeat=repeat)
        h = peer.encode(x).latents
        t_peer_enc = time_call(lambda: peer.quantize(peer.encode(x).latents), repeat=repeat)
        t_peer_dec = time_call(lambda: peer.decode(h), repeat=repeat)
    return [
        f"| image {size}x{size}, batch {batch} | ImageTokenizer ({n_params(ours) / 1e6:.2f} M) | "
        f"diffusers VQModel ({n_params(peer) / 1e6:.2f} M) | {batch / t_ours_enc:.0f} img/s | {batch / t_ours_dec:.0f} img/s | "
        f"{t_peer_enc / t_ours_enc:.2f}x | {t_peer_dec / t_ours_dec:.2f}x |"
    ]


def bench_audio(seconds: float, repeat: int) -> list[str]:
    """Ours against EnCodec twice: its default block (one residual unit, LSTM bottleneck), and with
    as many dilated residual units per block as ours (``len(dilations)``, dilation growth 3)."""
    from transformers import EncodecConfig, EncodecModel

    ours = AudioTokenizer().eval()
    cfg = ours.config
    sr = cfg.sample_rate
    peer_kw = dict(sampling_rate=sr, audio_channels=1, num_filters=cfg.base_channels,
                   upsampling_ratios=list(reversed(cfg.strides)), codebook_size=1024,
                   target_bandwidths=[4 * 10 * sr / 320 / 1000])
    peers = [("transformers EncodecModel", EncodecModel(EncodecConfig(**peer_kw)).eval()),
             (f"EncodecModel, {len(cfg.dilations)} residual units per block",
              EncodecModel(EncodecConfig(**peer_kw, num_residual_layers=len(cfg.dilations),
                                         dilation_growth_rate=3)).eval())]
    x = torch.randn(1, 1, int(seconds * sr)) * 0.1
    rows = []
    with torch.inference_mode():
        idx = ours.encode(x)
        t_ours_enc = time_call(lambda: ours.encode(x), repeat=repeat)
        t_ours_dec = time_call(lambda: ours.decode(idx), repeat=repeat)
        for name, peer in peers:
            codes = peer.encode(x).audio_codes
            t_peer_enc = time_call(lambda: peer.encode(x), repeat=repeat)
            t_peer_dec = time_call(lambda: peer.decode(codes, [None]), repeat=repeat)
            rows.append(
                f"| audio {seconds:.0f} s at {sr} Hz | AudioTokenizer ({n_params(ours) / 1e6:.2f} M) | "
                f"{name} ({n_params(peer) / 1e6:.2f} M) | {seconds / t_ours_enc:.0f}x real time | "
                f"{seconds / t_ours_dec:.0f}x real time | {t_peer_enc / t_ours_enc:.2f}x | {t_peer_dec / t_ours_dec:.2f}x |")
    return rows


def bench_video(frames: int, size: int, repeat: int) -> list[str]:
    ours = VideoTokenizer().eval()
    x = torch.rand(1, 3, frames, size, size) * 2 - 1
    with torch.inference_mode():
        idx = ours.encode(x)
        t_enc = time_call(lambda: ours.encode(x), repeat=repeat)
        t_dec = time_call(lambda: ours.decode(idx), repeat=repeat)
    return [f"| video {frames}x{size}x{size} | VideoTokenizer ({n_params(ours) / 1e6:.2f} M) | none offline | "
            f"{frames / t_enc:.0f} frames/s | {frames / t_dec:.0f} frames/s | - | - |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; print only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    repeat = 3 if args.quick else 7
    lines = [
        "## Tokenizers: default configs against peers at the same compression (CPU)",
        "",
        f"`python benchmarks/bench_tokenizers.py --threads {args.threads}` on {machine_line()}. "
        "Peers are randomly initialised (speed does not depend on the weights) and sized like ours.",
        "",
        "| input | ours | peer | ours encode | ours decode | peer/ours encode time | peer/ours decode time |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for rows in (bench_image(8, 64, repeat), bench_audio(10.0, repeat), bench_video(17, 64, repeat)):
        lines += rows
        print("\n".join(rows), flush=True)
    lines += ["", "The first audio peer is EnCodec's default block (one residual unit per block, an LSTM at the "
              "bottleneck); the second gives it as many dilated residual units per block as ours, so both do "
              "about the same convolution work (ours uses DAC's Snake activation where EnCodec uses ELU)."]
    if not args.quick:
        write_section("bench_tokenizers", "\n".join(lines))
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
