"""CPU speed of fsqtok's Cosmos-Tokenizer ports against the reference code, same weights, same input, one process.

    python benchmarks/bench_cosmos_port.py --reference /path/to/Cosmos-Tokenizer [--pythonpath DIR] \
        [--variants DI8x8,DV4x8x8] [--repeats 5] [--threads 2] [--out results.json]

``--reference`` is a checkout of github.com/NVIDIA/Cosmos-Tokenizer (the folder holding
``cosmos_tokenizer/``; it needs einops and loguru importable, e.g. through ``--pythonpath``). Without
it the script says so in one line and exits 0. For each released variant it builds the reference
model at full size with seeded random weights (the released weights are TorchScript, which this
script does not read), converts its ``state_dict()`` with ``fsqtok convert cosmos``'s code, then
times encode (to indices) and decode (from indices) of the reference and of the port, alternating
the two, ``--repeats`` times each, and reports medians and the equality of their indices and decodes.
Inputs are real media from fsqtok's built-in samples (default: a 256x256 photo; 9 frames of 64x64 video).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

VARIANTS = {  # name: (modality, reference kwargs besides the reference's discrete_image/discrete_video defaults)
    "DI8x8": ("image", {"spatial_compression": 8}),
    "DI16x16": ("image", {"spatial_compression": 16}),
    "DV4x8x8": ("video", {"temporal_compression": 4, "spatial_compression": 8}),
    "DV8x8x8": ("video", {"temporal_compression": 8, "spatial_compression": 8}),
    "DV8x16x16": ("video", {"temporal_compression": 8, "spatial_compression": 16}),
}


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn()
    return time.perf_counter() - start, out


def bench_variant(name: str, repeats: int, image_size: int, video_size: int) -> dict:
    from cosmos_tokenizer.networks.configs import discrete_image, discrete_video
    from cosmos_tokenizer.networks.discrete_image import DiscreteImageTokenizer
    from cosmos_tokenizer.networks.discrete_video import CausalDiscreteVideoTokenizer

    from fsqtok.convert.cosmos import convert_cosmos
    from fsqtok.datasets.samples import sample_images, sample_videos

    modality, extra = VARIANTS[name]
    video = modality == "video"
    kwargs = dict(discrete_video if video else discrete_image, **extra)
    torch.manual_seed(0)
    ref = (CausalDiscreteVideoTokenizer if video else DiscreteImageTokenizer)(**kwargs).eval()
    ref.quantizer.dtype = torch.float32  # the reference's default bfloat16 codes would need a bfloat16 model
    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, f"{tmp}/model.safetensors")
        port = convert_cosmos(Path(tmp), config=kwargs).model
    x = (sample_videos(1, frames=9, size=video_size, split="val") if video
         else sample_images(1, size=image_size, split="val"))
    runs = {"reference": {"encode": [], "decode": []}, "port": {"encode": [], "decode": []}}
    for _ in range(repeats):  # alternate, so load changes on the machine hit both alike
        t, (ri, _, _) = _timed(lambda: ref.encode(x))
        runs["reference"]["encode"].append(t)
        t, rd = _timed(lambda: ref.decode_code(ri))
        runs["reference"]["decode"].append(t)
        t, pi = _timed(lambda: port.encode(x))
        runs["port"]["encode"].append(t)
        t, pd = _timed(lambda: port.decode(pi))
        runs["port"]["decode"].append(t)
    span = float(rd.max() - rd.min())
    return {
        "variant": name, "input": list(x.shape), "tokens": list(pi.shape),
        "parameters": sum(p.numel() for p in port.parameters()),
        "indices_equal": float((ri.long() == pi).float().mean()),
        "decode_max_abs_diff_over_range": float((rd - pd).abs().max()) / span,
        **{f"{who}_{op}_s": statistics.median(ts) for who, ops in runs.items() for op, ts in ops.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=None, help="Cosmos-Tokenizer checkout")
    parser.add_argument("--pythonpath", action="append", default=[], help="extra import path (einops, loguru)")
    parser.add_argument("--variants", default="DI8x8,DV4x8x8", help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--image-size", type=int, default=256, help="image side (a built-in sample photo)")
    parser.add_argument("--video-size", type=int, default=64, help="video side (9 frames of a built-in sample)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.reference is None:
        print("skipped: pass --reference PATH (a Cosmos-Tokenizer checkout; the reference code is not part of fsqtok)")
        return 0
    sys.path[:0] = [str(args.reference), *args.pythonpath]
    from loguru import logger

    logger.remove()  # the reference logs every constructor call
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| variant | input | tokens | encode ref / port (s) | decode ref / port (s) | indices equal | "
          "decode max diff / range |\n| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    results = []
    for variant in args.variants.split(","):
        results.append(r := bench_variant(variant, args.repeats, args.image_size, args.video_size))
        print(f"| {r['variant']} | {'x'.join(map(str, r['input']))} | {'x'.join(map(str, r['tokens']))} | "
              f"{r['reference_encode_s']:.3f} / {r['port_encode_s']:.3f} | {r['reference_decode_s']:.3f} / "
              f"{r['port_decode_s']:.3f} | {r['indices_equal']:.2%} | {r['decode_max_abs_diff_over_range']:.1e} |",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps({"threads": torch.get_num_threads(), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
