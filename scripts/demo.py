"""The main job (`make demo`): train an image tokenizer on the built-in real photos, evaluate, report.

    python scripts/demo.py --output-dir demo [--steps 600] [key=value recipe overrides ...]

Offline and CPU-friendly (under 10 minutes on 2 cores). It

1. trains ``recipes/configs/image/image.yaml`` with ``recipes/train_tokenizer.py`` (checkpoints along the way);
2. evaluates the untrained tokenizer (step 0, the same seeded initialization), every checkpoint and
   the final tokenizer on held-out sample photos (other source photos than the training crops);
3. writes ``<output-dir>/``: ``report.json`` and ``report.md`` (figures against training steps),
   ``grid.png`` (held-out originals left, reconstructions right), ``grid_step0.png`` and
   ``tokenizer/`` (Hub format: ``fsqtok.load_tokenizer("demo/tokenizer")``);
4. prints the figures. It exits with status 1 if training did not clearly beat step 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "recipes/configs/image/image.yaml"
MIN_GAIN_DB = 3.0  # "clearly better than step 0"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"fsqtok_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clear_previous_demo(out: Path) -> str | None:
    """Make ``out`` ready for a fresh demo: a folder an earlier demo wrote (``report.json``, or the ``run/``
    of an interrupted one) is removed; a missing or empty folder is fine. Any other folder is left as it
    is and the one-line error to print is returned (the demo never deletes files it did not write)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if out.is_dir() and ((out / "report.json").is_file() or (out / "run" / "config.yaml").is_file()):
        shutil.rmtree(out)
        return None
    what = "a folder that is not an earlier demo's output" if out.is_dir() else "a file"
    return f"--output-dir {out} is {what}; choose another folder (or remove it yourself)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", default="demo")
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's max_steps)")
    p.add_argument("--num-val", type=int, default=64, help="held-out photos crops to evaluate")
    p.add_argument("--eval-size", type=int, default=64, help="held-out crop side in pixels")
    p.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    return p.parse_args(argv)


def train(args: argparse.Namespace, overrides: list[str], steps: int, run_dir: Path) -> float | None:
    """Step 1: the recipe in a subprocess (one process here; `accelerate launch` the same command for more).
    Returns its seconds, or None when it failed."""
    print(f"[demo] 1/3 training {args.config} for {steps} steps -> {run_dir}", flush=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, str(ROOT / "recipes" / "train_tokenizer.py"), "--config", str(ROOT / args.config), *overrides]
    res = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if res.returncode != 0:
        print(f"[demo] error: training failed (exit {res.returncode})", file=sys.stderr)
        return None
    return time.perf_counter() - t0


def evaluate_checkpoints(args: argparse.Namespace, run_dir: Path, out: Path) -> tuple[list[str], dict]:
    """Step 2: the step-0 tokenizer (same config and seed: the recipe's initial weights), every checkpoint
    and the final tokenizer on held-out crops. Returns the names in training order and the report."""
    import torch
    import yaml
    from accelerate.utils import set_seed

    import fsqtok

    trained = fsqtok.load_tokenizer(str(run_dir / "tokenizer"))
    set_seed(int(yaml.safe_load((run_dir / "config.yaml").read_text())["seed"]))
    type(trained)(trained.config).save_pretrained(run_dir / "step-0")
    names, folders = ["step 0"], [str(run_dir / "step-0")]
    for ckpt in sorted((run_dir / "checkpoints").glob("step-*")):
        names.append(f"step {int(ckpt.name.split('-')[1])}")
        folders.append(str(ckpt / "tokenizer"))
    print(f"[demo] 2/3 evaluating {len(folders)} tokenizers on {args.num_val} held-out crops", flush=True)
    evaluate = load_script("evaluate")
    eval_args = evaluate.parse_args(
        sum((["--tokenizer", f, "--name", n] for f, n in zip(folders, names)), [])
        + ["--num", str(args.num_val), "--size", str(args.eval_size), "--grid", "8", "--output-dir", str(out / "eval")]
    )
    with torch.inference_mode():
        return names, evaluate.run(eval_args)


def results_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per evaluated tokenizer (its training steps), one column per figure."""
    columns = ["psnr", "ssim", "usage", "perplexity", "bits_per_pixel"]
    table = "| training steps | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    for name, m in results.items():
        table += f"| {name.split()[-1]} | " + " | ".join(f"{m[c]:.4g}" for c in columns) + " |\n"
    return table


def write_report(args: argparse.Namespace, out: Path, run_dir: Path, names: list[str], report: dict,
                 summary: dict) -> str:
    """Step 3: the demo folder (tokenizer/, grids, report.json, report.md); returns the results table."""
    shutil.copytree(run_dir / "tokenizer", out / "tokenizer")
    shutil.copy(out / "eval" / f"{names[-1]}_grid.png", out / "grid.png")
    shutil.copy(out / "eval" / "step 0_grid.png", out / "grid_step0.png")
    (out / "report.json").write_text(json.dumps({"summary": summary, **report}, indent=2) + "\n")
    table = results_table(report["results"])
    info = report["tokenizers"][names[-1]]
    md = (
        "# fsqtok demo: image tokenizer on built-in real photos\n\n"
        f"`{info['class']}`, {info['parameters']:,} parameters, compression {info['compression']}, "
        f"FSQ levels {info['levels']} (codebook {info['codebook_size']}), {info['bits_per_pixel']} bits per pixel.\n"
        f"Trained {summary['steps']} steps in {summary['train_seconds']:.0f} s on {int(args.num_val)} held-out "
        f"{args.eval_size}x{args.eval_size} crops of photos not used for training; the whole demo took "
        f"{summary['total_seconds']:.0f} s.\n\n"
        f"{table}\n"
        "![originals (left) and reconstructions (right)](grid.png)\n\n"
        f"Load it: `fsqtok.load_tokenizer(\"{out / 'tokenizer'}\")`.\n"
    )
    (out / "report.md").write_text(md)
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    out = Path(args.output_dir).resolve()
    run_dir = out / "run"
    problem = clear_previous_demo(out)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)

    import yaml

    cfg = yaml.safe_load((ROOT / args.config).read_text())
    steps = args.steps or int(cfg["max_steps"])
    overrides = [f"output_dir={run_dir}", f"max_steps={steps}", f"checkpoint.every={max(1, steps // 4)}",
                 "checkpoint.keep_last=0", "log.progress_bar=false", *args.overrides]
    train_seconds = train(args, overrides, steps, run_dir)
    if train_seconds is None:
        return 1
    names, report = evaluate_checkpoints(args, run_dir, out)
    first, last = report["results"][names[0]], report["results"][names[-1]]
    gain = last["psnr"] - first["psnr"]
    total = time.perf_counter() - t_start
    summary = {
        "config": args.config, "overrides": overrides, "steps": steps, "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total, 1), "psnr_step0": first["psnr"], "psnr_final": last["psnr"],
        "psnr_gain_db": gain, "ssim_step0": first["ssim"], "ssim_final": last["ssim"],
        "codebook_usage_final": last["usage"], "bits_per_pixel": last["bits_per_pixel"],
        "tokenizer": str(out / "tokenizer"), "grid": str(out / "grid.png"),
    }
    table = write_report(args, out, run_dir, names, report, summary)
    print("\n[demo] 3/3 results (held-out photos):\n")
    print(table)
    print(f"PSNR {first['psnr']:.2f} dB at step 0 -> {last['psnr']:.2f} dB after {steps} steps "
          f"(+{gain:.2f} dB); SSIM {first['ssim']:.3f} -> {last['ssim']:.3f}; codebook usage {last['usage']:.1%}")
    print(f"demo folder: {out}  (report.md, report.json, grid.png, tokenizer/)")
    print(f"total time: {total:.0f} s (training {train_seconds:.0f} s)")
    if gain < MIN_GAIN_DB:
        print(f"[demo] error: PSNR gain {gain:.2f} dB is below {MIN_GAIN_DB} dB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
