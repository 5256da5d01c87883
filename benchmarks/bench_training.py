"""Training benchmarks: process scaling, the demo's quality against steps, and FSQ against VQ.

    python benchmarks/bench_training.py                   # all three; writes its BENCHMARKS.md section
    python benchmarks/bench_training.py --steps 300 --scaling-steps 40 --demo-report demo/report.json

1. **Scaling.** The image recipe (``recipes/configs/image/image.yaml``) for ``--scaling-steps``
   steps with 1 process and with 2 CPU processes (``accelerate launch --multi_gpu``, gloo), the
   same per-process batch. Scaling efficiency = samples/s with 2 processes / (2 x samples/s with 1).
   The first log interval (start-up) is left out.
2. **Demo quality against steps**, from ``demo/report.json`` (``make demo``; run here if missing).
3. **FSQ against VQ.** The same recipe, data, seed and steps with the FSQ bottleneck (the paper's
   levels, ``--levels``) and with a VQ-VAE bottleneck of the same codebook size and latent
   width (``fsqtok.quantizers.VectorQuantizer``, EMA codebook, commitment 0.25, no restarts),
   swapped into the same tokenizer, for each codebook size. Held-out PSNR/SSIM and codebook
   usage at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
from common import machine_line, write_section

CONFIG = "recipes/configs/image/image.yaml"


def threads_per_process(procs: int) -> int:
    """The machine's cores shared out: 1 process x all cores against 2 processes x half each."""
    return max(1, (os.cpu_count() or 1) // procs)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]


def scaling(steps: int, workdir: Path) -> list[dict]:
    rows = []
    for procs in (1, 2):
        out = workdir / f"scale{procs}"
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--num_processes", str(procs),
                  "--num_cpu_threads_per_process", str(threads_per_process(procs))]
        launch += ["--multi_gpu"] if procs > 1 else ["--cpu"]
        cmd = launch + ["recipes/train_tokenizer.py", "--config", CONFIG, f"output_dir={out}", f"max_steps={steps}",
                        "log.every=10", "log.tensorboard=false", "log.media_every=0", "checkpoint.every=100000",
                        "log.progress_bar=false", "data.num_val=8"]
        env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        train = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"][1:]  # skip start-up interval
        sps = sum(r["steps_per_s"] for r in train) / len(train)
        samples = sum(r["samples_per_s"] for r in train) / len(train)
        rows.append({"processes": procs, "steps_per_s": sps, "samples_per_s": samples, "wall_s": wall})
        print(f"scaling: {procs} process(es): {sps:.2f} steps/s, {samples:.1f} samples/s", flush=True)
    return rows


def load_recipe():
    spec = importlib.util.spec_from_file_location("fsqtok_recipe_bench", ROOT / "recipes" / "train_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fsq_vs_vq(steps: int, level_sets: list[list[int]], num_val: int, workdir: Path) -> list[dict]:
    """One in-process recipe run per codebook and bottleneck (``tokenizer.quantizer=fsq`` / ``vq``)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    recipe = load_recipe()
    rows = []
    for levels in level_sets:
        for name in ("FSQ", "VQ"):
            out = workdir / f"{name}_{'-'.join(map(str, levels))}"
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()
            PartialState._reset_state()
            t0 = time.perf_counter()
            code = recipe.main(["--config", str(ROOT / CONFIG), f"output_dir={out}", f"max_steps={steps}",
                                f"checkpoint.every={steps}", "log.tensorboard=false", "log.progress_bar=false",
                                "log.media_every=0", f"data.num_val={num_val}", f"tokenizer.quantizer={name.lower()}",
                                f"tokenizer.levels=[{','.join(map(str, levels))}]"])
            if code != 0:
                raise SystemExit(f"{name} {levels} run failed ({code})")
            ev = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "eval"][-1]
            rows.append({"bottleneck": name, "levels": levels, "codebook": math.prod(levels), "psnr": ev["psnr"],
                         "ssim": ev["ssim"], "usage": ev["usage"], "perplexity": ev["perplexity"],
                         "seconds": time.perf_counter() - t0})
            print(f"{name} {levels}: {rows[-1]}", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="FSQ/VQ training steps each")
    p.add_argument("--levels", default="8,5,5,5 7,5,5,5,5 8,8,8,6,5",
                   help="FSQ level sets to compare with VQ at the same codebook size (space-separated)")
    p.add_argument("--num-val", type=int, default=1024, help="held-out 32x32 crops for the FSQ/VQ comparison")
    p.add_argument("--scaling-steps", type=int, default=40)
    p.add_argument("--demo-report", default="demo/report.json")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scale = scaling(args.scaling_steps, work)
        report_path = ROOT / args.demo_report
        if not report_path.exists():
            subprocess.run([sys.executable, "scripts/demo.py", "--output-dir", str(report_path.parent)], cwd=ROOT, check=True)
        demo = json.loads(report_path.read_text())
        level_sets = [[int(v) for v in spec.split(",")] for spec in args.levels.split()]
        vq = fsq_vs_vq(args.steps, level_sets, args.num_val, work)

    one, two = scale
    eff = two["samples_per_s"] / (2 * one["samples_per_s"])
    cmd = (f"python benchmarks/bench_training.py --steps {args.steps} --scaling-steps {args.scaling_steps}"
           f" --demo-report {args.demo_report} --levels '{args.levels}' --num-val {args.num_val}")
    body = f"## Training: process scaling, demo quality against steps, FSQ against VQ (CPU)\n\n`{cmd}` on {machine_line()}.\n\n"
    body += (f"**Scaling** (`{CONFIG}`, {args.scaling_steps} steps, per-process batch 16; "
             "2 processes = `accelerate launch --multi_gpu --num_processes 2` on CPU/gloo; "
             f"one process runs {threads_per_process(1)} threads, each of two processes {threads_per_process(2)}):\n\n"
             "| processes | steps/s | samples/s | scaling efficiency |\n| ---: | ---: | ---: | ---: |\n"
             f"| 1 | {one['steps_per_s']:.2f} | {one['samples_per_s']:.1f} | 1.00 |\n"
             f"| 2 | {two['steps_per_s']:.2f} | {two['samples_per_s']:.1f} | {eff:.2f} |\n\n"
             f"With {os.cpu_count()} cores, one process already keeps every core busy, so a second process can only add "
             "the cost of gradient all-reduce over gloo; efficiency near 1 needs a core (or GPU) per process.\n\n")
    s = demo["summary"]
    body += (f"**Demo** (`make demo`: {s['steps']} steps in {s['train_seconds']:.0f} s, whole demo {s['total_seconds']:.0f} s), "
             "held-out photos, reconstruction against training steps:\n\n"
             "| steps | PSNR (dB) | SSIM | codebook usage | perplexity |\n| ---: | ---: | ---: | ---: | ---: |\n")
    for name, m in demo["results"].items():
        body += f"| {name.split()[-1]} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['usage']:.1%} | {m['perplexity']:.0f} |\n"
    cfg = yaml.safe_load((ROOT / CONFIG).read_text())
    size, factor = cfg["data"]["size"], 2 ** (len(cfg["tokenizer"]["channel_mult"]) - 1)
    tokens = args.num_val * (size // factor) ** 2
    expected = ", ".join(f"{1 - (1 - 1 / k) ** tokens:.0%} of {k}" for k in sorted({r["codebook"] for r in vq}))
    body += (f"\n**FSQ against VQ** (`{CONFIG}`, same data, seed and {args.steps} steps for each run; the FSQ paper's "
             "levels, VQ at the same codebook size and latent width (`tokenizer.quantizer=vq`: EMA codebook, "
             f"commitment 0.25, no dead-code restarts); evaluated on {args.num_val} held-out {size}x{size} crops, "
             f"{tokens:,} tokens, so a uniform code distribution would use {expected} codes):\n\n"
             "| codebook | bottleneck | held-out PSNR (dB) | SSIM | codebook usage (held-out) | perplexity |\n"
             "| ---: | --- | ---: | ---: | ---: | ---: |\n")
    for r in vq:
        body += (f"| {r['codebook']} ({'x'.join(map(str, r['levels']))}) | {r['bottleneck']} | {r['psnr']:.2f} | "
                 f"{r['ssim']:.3f} | {r['usage']:.1%} | {r['perplexity']:.0f} |\n")
    body += "\n"
    for fsq, vqr in zip(vq[::2], vq[1::2]):
        diff = fsq["psnr"] - vqr["psnr"]
        verdict = "equal (within 0.25 dB)" if abs(diff) < 0.25 else ("better" if diff > 0 else "worse")
        body += (f"- codebook {fsq['codebook']}: FSQ reaches {verdict} reconstruction against VQ ({diff:+.2f} dB), "
                 f"using {fsq['usage']:.0%} of its codebook against VQ's {vqr['usage']:.0%}.\n")
    print(body)
    if not args.no_write:
        write_section("bench_training", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
