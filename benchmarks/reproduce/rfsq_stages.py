"""Audio tokenizer quality against the number of residual FSQ stages: the old and the fixed stage scale.

    python -m benchmarks.reproduce.rfsq_stages                # both scales, 100 steps each (~4 min of CPU, 1 thread)
    python -m benchmarks.reproduce.rfsq_stages --steps 2      # smoke run

Trains the default tiny ``AudioTokenizer`` (16 kHz, hop 320, residual FSQ ``[8,5,5,5] x 4`` with
quantize dropout) briefly on the bundled real speech, once per ``stage_scale`` from the same seed
and batches, then decodes the held-out speech from the first 1..4 stages. Per row:

* latent error: RMS and max of ``bound(h) / half_width - decoded`` over the encoder's latents of
  the held-out speech, i.e. how well the stages describe what the quantizer is given;
* SI-SDR (dB, higher is better) and multi-scale mel distance (lower is better) of the audio.

The training is short, so the audio figures are those of an early model: they compare the
two scales and show whether more stages still help, not the quality a full run reaches.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

from fsqtok.datasets.samples import sample_audio
from fsqtok.losses.spectral import MultiScaleMelLoss
from fsqtok.metrics import mel_distance, si_sdr
from fsqtok.quantizers import ResidualFSQ
from fsqtok.tokenizers import AudioTokenizer


def build(stage_scale: str, seed: int) -> AudioTokenizer:
    """The default audio tokenizer whose residual quantizer uses ``stage_scale``."""
    torch.manual_seed(seed)
    model = AudioTokenizer()
    q = model.quantizer
    model.quantizer = ResidualFSQ(q.levels, q.num_stages, q.in_channels, quantize_dropout=q.quantize_dropout,
                                  seed=seed, stage_scale=stage_scale)
    return model


def train(model: AudioTokenizer, clips: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    """Adam on L1 + multi-scale mel loss; returns seconds spent."""
    mel = MultiScaleMelLoss(sample_rate=model.config.sample_rate)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        x = clips[torch.randint(len(clips), (batch,), generator=g)]
        y = model(x).reconstruction
        loss = F.l1_loss(y, x) + mel(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(model: AudioTokenizer, x: torch.Tensor) -> list[dict[str, float]]:
    """Per number of decoded stages: latent RMS/max error, SI-SDR and mel distance on ``x (B, 1, T)``."""
    model.eval()
    q = model.quantizer
    if x.shape[-1] % model.hop_length:
        raise ValueError(f"clips of {x.shape[-1]} samples are not a multiple of the hop {model.hop_length}")
    z = model.encoder(x)
    half_width = torch.tensor([float(L // 2) for L in q.levels]).view(1, -1, 1)
    target = q.fsq.bound(q.project_in(z).movedim(1, -1)).movedim(-1, 1) / half_width
    indices = model.encode(x)
    assert torch.equal(indices, q(z).indices)
    rows = []
    for s in range(1, q.num_stages + 1):
        err = q.decode_codes(indices[:, :s]) - target
        y = model.decode(indices[:, :s], input_shape=x.shape)
        rows.append({"stages": s, "rms": err.square().mean().sqrt().item(), "max": err.abs().max().item(),
                     "si_sdr": si_sdr(y, x).mean().item(),
                     "mel": mel_distance(y, x, sample_rate=model.config.sample_rate).mean().item()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per stage scale")
    parser.add_argument("--batch", type=int, default=8, help="clips per step")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of the training clips")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    clips = sample_audio(64, seconds=args.seconds, split="train", seed=args.seed)
    val = sample_audio(8, seconds=1.0, split="val", seed=args.seed + 1)
    print(f"`python -m benchmarks.reproduce.rfsq_stages --steps {args.steps} --batch {args.batch} --seconds "
          f"{args.seconds} --threads {args.threads}`: default AudioTokenizer, residual FSQ [8,5,5,5] x 4, "
          f"{args.steps} Adam steps of {args.batch} x {args.seconds} s real speech, 8 held-out 1 s clips.\n")
    print("| stage scale | stages | kbit/s | latent RMS error | latent max error | SI-SDR (dB) | mel distance |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for scale in ("levels", "grid"):
        model = build(scale, args.seed)
        seconds = train(model, clips, args.steps, args.batch, args.seed)
        for r in evaluate(model, val):
            kbps = model.bitrate_at(r["stages"]) / 1000
            name = {"levels": "`levels` (old: L^-i)", "grid": "`grid` (fixed)"}[scale]
            print(f"| {name} | {r['stages']} | {kbps:.1f} | {r['rms']:.2e} | {r['max']:.2e} | "
                  f"{r['si_sdr']:.2f} | {r['mel']:.3f} |", flush=True)
        print(f"<!-- {scale}: trained in {seconds:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
