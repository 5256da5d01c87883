"""NeMo codec port against NeMo itself: CPU speed and equality on the same weights and input.

Builds NVIDIA's Low Frame-rate Speech Codec architecture (NeMo's released config, random weights) in
NeMo, maps its state dict into :class:`fsqtok.tokenizers.NemoAudioTokenizer` with the converter's own
code, and times ``encode`` and ``decode`` of both, alternating, in one process (median of the rounds).
Needs ``nemo_toolkit[tts]`` (a scratch venv; it is no fsqtok dependency); without it, says so and exits::

    PYTHONPATH=src NEMO_VENV/bin/python benchmarks/bench_nemo_port.py --write
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import machine_line, write_section

M = "nemo.collections.tts.modules.audio_codec_modules."
LFSC = {  # NeMo 3.0.0 examples/tts/conf/audio_codec/audio_codec_low_frame_rate_22050.yaml (the model parts)
    "sample_rate": 22050, "samples_per_frame": 1024,
    "audio_encoder": {"_target_": M + "HiFiGANEncoder", "down_sample_rates": [2, 2, 4, 8, 8], "encoded_dim": 32,
                      "base_channels": 48, "activation": "lrelu", "resblock_dilation_sizes": [1]},
    "vector_quantizer": {"_target_": M + "GroupFiniteScalarQuantizer", "num_groups": 8,
                         "num_levels_per_group": [8, 7, 6, 6]},
    "audio_decoder": {"_target_": M + "HiFiGANDecoder", "up_sample_rates": [8, 8, 4, 2, 2], "input_dim": 32,
                      "base_channels": 1024, "activation": "lrelu", "output_activation": "tanh"},
    "loss_resolutions": [[512, 128, 512]], "mel_loss_dims": [64],
    "generator_loss": {"_target_": "nemo.collections.tts.losses.audio_codec_loss.GeneratorSquaredLoss"},
    "discriminator_loss": {"_target_": "nemo.collections.tts.losses.audio_codec_loss.DiscriminatorSquaredLoss"},
    "commit_loss_scale": 0.0,
}


def timed(fn, rounds: list[float]) -> None:
    """Run ``fn`` once and append its wall time in seconds to ``rounds``."""
    t0 = time.perf_counter()
    fn()
    rounds.append(time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the speech input")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (each runs both, alternating)")
    parser.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args()
    try:
        from nemo.collections.tts.models import AudioCodecModel
        from omegaconf import OmegaConf
    except ImportError:
        print("bench_nemo_port: skipped, nemo_toolkit is not importable (install nemo_toolkit[tts] in a scratch venv)")
        return
    from fsqtok.convert.nemo import nemo_config, tokenizer_from_state
    from fsqtok.datasets.samples import sample_audio

    torch.manual_seed(0)
    ref = AudioCodecModel(cfg=OmegaConf.create(LFSC)).eval()
    port, skipped = tokenizer_from_state(nemo_config(LFSC, "LFSC config"), ref.state_dict(), "LFSC state dict")
    audio = sample_audio(1, seconds=args.seconds, sample_rate=22050, seed=0)
    lengths = torch.tensor([audio.shape[-1]])
    times: dict[str, list[float]] = {k: [] for k in ("nemo encode", "fsqtok encode", "nemo decode", "fsqtok decode")}
    with torch.inference_mode():
        ref_tokens, tokens_len = ref.encode(audio=audio[:, 0], audio_len=lengths)
        tokens = port.encode(audio)
        ref_audio, _ = ref.decode(tokens=ref_tokens, tokens_len=tokens_len)
        port_audio = port.decode(ref_tokens)
        for _ in range(args.rounds):  # alternate, so that load on the machine hits both alike
            timed(lambda: ref.encode(audio=audio[:, 0], audio_len=lengths), times["nemo encode"])
            timed(lambda: port.encode(audio), times["fsqtok encode"])
            timed(lambda: ref.decode(tokens=ref_tokens, tokens_len=tokens_len), times["nemo decode"])
            timed(lambda: port.decode(ref_tokens), times["fsqtok decode"])
    med = {k: statistics.median(v) for k, v in times.items()}
    equal = (tokens == ref_tokens.long()).float().mean().item()
    diff = (port_audio[:, 0] - ref_audio).abs().max().item()
    span = (ref_audio.max() - ref_audio.min()).item()
    body = (
        f"`PYTHONPATH=src NEMO_VENV/bin/python benchmarks/bench_nemo_port.py --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --write` (`NEMO_VENV`: a venv with `nemo_toolkit[tts]==3.0.0` and this torch). Low Frame-rate Speech Codec "
        f"architecture at full size ({sum(p.numel() for p in port.parameters()) / 1e6:.1f} M parameters in the port), "
        f"random weights mapped by `fsqtok.convert.nemo.tokenizer_from_state`, {args.seconds:g} s of the built-in "
        f"speech at 22.05 kHz, batch 1, CPU: {machine_line()}. Median of {args.rounds} alternating rounds.\n\n"
        "| step | NeMo (s) | fsqtok port (s) | NeMo / port |\n| --- | --- | --- | --- |\n"
        + "".join(f"| {step} | {med['nemo ' + step]:.3f} | {med['fsqtok ' + step]:.3f} | "
                  f"{med['nemo ' + step] / med['fsqtok ' + step]:.2f}x |\n" for step in ("encode", "decode"))
        + f"\nTokens equal: {equal:.2%} of {tokens.numel()}; decoded audio max |difference| {diff:.2e} "
        f"(output range {span:.3f}); {len(skipped)} source tensors skipped (loss buffers, FSQ constants).\n"
    )
    print(body)
    if args.write:
        write_section("nemo-port", "## NeMo codec port against NeMo (CPU)\n\n" + body)


if __name__ == "__main__":
    main()
