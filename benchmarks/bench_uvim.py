"""UViM at reduced scale: FSQ against VQ with and without codebook splitting (the FSQ paper's Table 3 setup).

    OMP_NUM_THREADS=1 nohup python benchmarks/bench_uvim.py --tasks depth colorization panoptic &   # resumable

For each task, training seed (``--seeds``) and bottleneck (``fsq``: FSQ [7,5,5,5,5], 4375 codes; ``vq_split``:
VQ with 4096 EMA codes and big_vision's splitting; ``vq``: the same without splitting) it trains stage I, then
stage II on that stage-I model, plus one no-code base model ``f(x, empty)``, all through
``recipes/train_uvim.py`` (every run passes ``--resume``, so re-running the command continues where it
stopped and skips finished runs). It then evaluates on the synthetic test split (and, for depth, the real
motorcycle and castel frames): stage-I (oracle), stage-II and no-code metrics, codebook usage over the
test codes, stage-II token accuracy and the perplexity of the decoded codes; for depth RMSE and
colorization PSNR also a 95% interval over test images and the paired per-image difference of stage II
to the no-code model. Results: ``uvim_<task>.json`` and ``uvim_<task>.md`` in the output folder
(``uvim_<task>_seed1-2.json`` ... for other ``--seeds``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fsqtok.data.real_depth import real_depth_frames  # noqa: E402
from fsqtok.data.uvim_pairs import UViMPairs  # noqa: E402
from fsqtok.generative.uvim import UViMStage1  # noqa: E402
from fsqtok.generative.uvim_eval import evaluate, predict_batch  # noqa: E402
from fsqtok.generative.uvim_lm import UViMPipeline  # noqa: E402
from fsqtok.metrics import depth_errors, psnr  # noqa: E402

QUANTIZERS = ("fsq", "vq_split", "vq")
PAPER = {"depth": ("RMSE", {"vq_split": 0.468, "fsq": 0.473, "vq": 0.490}),
         "panoptic": ("PQ", {"vq_split": 43.4, "fsq": 43.2}),
         "colorization": ("FID-5k", {"vq_split": 16.90, "fsq": 17.55})}
METRICS = {"depth": ("rmse",), "panoptic": ("pq", "sq", "rq"), "colorization": ("psnr", "fd_chroma")}
PER_IMAGE = {"depth": "rmse", "colorization": "psnr"}  # metrics with a per-image value (intervals, paired differences)


def scale_overrides(args) -> list[str]:
    """The reduced scale (stated in results.md)."""
    return [f"model.image_size={args.size}", f"model.width={args.width}", "model.blocks=1", "model.feature_down=2",
            "model.code_grid=4", "model.ema_decay=0.95", "model.split_threshold=0.001", f"data.num_train={args.num_train}", f"data.cache_dir={(args.output_dir / 'pairs').resolve()}",
            "data.num_val=16", f"data.batch_size={args.batch_size}", "optim.warmup_steps=50", "log.every=25",
            "log.media_every=0", "log.eval_every=0", "log.progress_bar=false", "checkpoint.every=100",
            "checkpoint.keep_last=1", "optim.ema_decay=0.0"]


def train(config: str, out: Path, overrides: list[str]) -> Path:
    """Run (or continue) one recipe run; returns its model folder."""
    model = out / "model"
    if (model / "config.json").exists():
        return model
    cmd = [sys.executable, str(ROOT / "recipes" / "train_uvim.py"), "--config", str(ROOT / "recipes/configs/uvim" / config),
           f"output_dir={out}", *overrides, "--resume"]
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run(cmd, check=True, env=env)
    return model


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 32):
    for i in range(0, len(x), size):
        yield {"image": x[i:i + size], "target": y[i:i + size]}


def per_image(stage1: UViMStage1, x, y, mode: str, lm=None, code_tokens: int | None = None) -> torch.Tensor | None:
    """``(N,)`` per-image values of the task's main per-image metric (depth RMSE, colorization PSNR), or None."""
    if stage1.config.task not in PER_IMAGE:
        return None
    values = []
    for b in batches(x, y):
        pred, _ = predict_batch(stage1, b["image"], b["target"], mode, lm, code_tokens)
        values.append(depth_errors(pred, b["target"])["rmse"] if stage1.config.task == "depth" else psnr(pred, b["target"]))
    return torch.cat(values)


def train_seconds(model_dir: Path) -> float:
    """Training wall time of a run, from the steps/s of its logged intervals (startup and evaluation excluded)."""
    total, prev = 0.0, 0
    for line in (model_dir.parent / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "train" and row.get("steps_per_s"):
            step = row["step"]
            total += max(step - prev, 0) / row["steps_per_s"]
            prev = step
    return total


def mean_ci(v: torch.Tensor) -> tuple[float, float]:
    """Mean of the finite values and the half-width of its 95% normal interval (NaN for one value)."""
    v = v[torch.isfinite(v)].double()
    return float(v.mean()), float(1.96 * v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def evaluate_task(task: str, runs: dict[str, tuple[Path, Path | None]], args) -> dict:
    """``{model: {set: {mode: metrics}}}``; a per-image metric adds its mean, 95% interval and, for stage II,
    the interval of the paired per-image difference to the no-code model (same images)."""
    data = UViMPairs(task, "test", args.num_test, args.size, seed=0)
    items = [data[i] for i in range(len(data))]
    sets = {"synthetic test": (torch.stack([i["image"] for i in items]), torch.stack([i["target"] for i in items]))}
    if task == "depth":
        for source in ("motorcycle", "castel"):
            sets[f"real {source}"] = real_depth_frames(source, args.size)
    results: dict = {}
    no_code: dict[str, torch.Tensor] = {}
    for name, (s1_dir, lm_dir) in runs.items():
        stage1 = UViMStage1.from_pretrained(s1_dir)
        lm = UViMPipeline.from_pretrained(lm_dir).lm if lm_dir is not None else None
        results.setdefault(name, {})["train_wall_s"] = {"stage1": train_seconds(s1_dir),
                                                        **({"stage2": train_seconds(lm_dir)} if lm_dir else {})}
        # (row label, mode, code prefix): the whole code, and its first k tokens (the rest dropped)
        modes = [("no_code", "no_code", None)] if lm is None else [
            ("stage1", "oracle", None), ("stage2", "lm", None),
            *((f"{label}_first{k}", mode, k) for k in args.code_prefixes for label, mode in (("stage1", "oracle"), ("stage2", "lm")))]
        for set_name, (x, y) in sets.items():
            row = results.setdefault(name, {}).setdefault(set_name, {})
            for label, mode, k in modes:
                m = evaluate(stage1, batches(x, y), mode, lm, code_tokens=k)
                v = per_image(stage1, x, y, mode, lm, k)
                if v is not None:
                    key = PER_IMAGE[task]
                    m[f"{key}_mean_per_image"], m[f"{key}_ci95"] = mean_ci(v)
                    if mode == "no_code":
                        no_code[set_name] = v
                    elif mode == "lm" and set_name in no_code:
                        m[f"{key}_minus_no_code"], m[f"{key}_minus_no_code_ci95"] = mean_ci(v - no_code[set_name])
                row[label] = m
            print(task, name, set_name, json.dumps(row), flush=True)
    return results


def markdown(all_results: dict, args) -> str:
    lines = ["# UViM: FSQ vs VQ at reduced scale\n",
             f"Scale: {args.size}x{args.size} images, 16-token guide code (4x4), conv stage I of width {args.width}, "
             f"stage II {args.lm_layers}+{args.lm_layers}-layer transformer of width {args.lm_width} on 8x8 patches "
             f"({args.lm_stem} stem); "
             f"{args.steps1} stage-I and {args.steps2} stage-II steps (stage-II lr {args.lm_lr}) of batch {args.batch_size} "
             f"on {args.num_train} training pairs; synthetic test split of {args.num_test} images. Seeds: "
             f"{', '.join(map(str, args.seeds))}; +/- is the 95% interval over test images; 'II - no code' is the "
             "paired per-image difference of stage II to the no-code model; 'first k' columns give stage I / stage II "
             "from the code's first k tokens only (the rest dropped). The paper: 512x512 NYU / COCO / ImageNet, "
             "256-token code, ViT-L, 4096/4375 codes.\n"]
    for task, by_seed in all_results.items():
        metric = " / ".join(METRICS[task])
        paper_name, paper = PAPER[task]
        key = PER_IMAGE.get(task)
        lines.append(f"## {task}\n")
        prefixes = "".join(f" I / II, first {k} ({METRICS[task][0]}) |" for k in args.code_prefixes)
        lines.append(f"| model | seed | set | stage I (oracle) {metric} | stage II {metric} | no-code {metric} | "
                     f"II - no code | stage-II token accuracy / code perplexity | codebook usage (stage I codes) |"
                     f"{prefixes} paper {paper_name} |")
        lines.append("|" + " --- |" * (10 + len(args.code_prefixes)))
        for seed, res in by_seed.items():
            for name, sets in res.items():
                for set_name, row in sets.items():
                    if set_name == "train_wall_s":
                        continue
                    def cell(mode: str) -> str:
                        m = row.get(mode)
                        if m is None:
                            return ""
                        return " / ".join(f"{m[k]:.3f}" + (f" +/- {m[f'{k}_ci95']:.3f}" if k == key else "")
                                          for k in METRICS[task])
                    s2, usage = row.get("stage2", {}), row.get("stage1", {}).get("codebook_usage")
                    diff = (f"{s2[f'{key}_minus_no_code']:+.3f} +/- {s2[f'{key}_minus_no_code_ci95']:.3f}"
                            if key and f"{key}_minus_no_code" in s2 else "")
                    lm = f"{100 * s2['token_accuracy']:.1f}% / {s2['perplexity']:.1f}" if "token_accuracy" in s2 else ""
                    first = "".join(f" {row[f'stage1_first{k}'][METRICS[task][0]]:.3f} / "
                                    f"{row[f'stage2_first{k}'][METRICS[task][0]]:.3f} |" if f"stage2_first{k}" in row
                                    else " |" for k in args.code_prefixes)
                    lines.append(f"| {name} | {seed} | {set_name} | {cell('stage1')} | {cell('stage2')} | "
                                 f"{cell('no_code')} | {diff} | {lm} | {'' if usage is None else f'{100 * usage:.2f}%'} |"
                                 f"{first} {paper.get(name, '')} |")
        lines.append("")
        for seed, res in by_seed.items():
            walls = ", ".join(f"{name} " + " + ".join(f"{v / 60:.1f}" for v in r["train_wall_s"].values())
                              for name, r in res.items())
            lines.append(f"Training wall time, seed {seed} (minutes, stage I + stage II, on a shared 2-core CPU): {walls}.\n")
    return "\n".join(lines)


def train_task(task: str, seed: int, args) -> dict[str, tuple[Path, Path | None]]:
    """Train (or finish, or skip when done) every run of ``task`` for one training seed; ``{name: (stage I, stage II)}``."""
    common = [*scale_overrides(args), f"seed={seed}"]
    base, tag = args.output_dir / task, f"_seed{seed}" if seed else ""
    runs: dict[str, tuple[Path, Path | None]] = {}
    if args.no_code:
        runs["no_code"] = (train(f"{task}_stage1.yaml", base / f"no_code_stage1{tag}",
                                 [*common, "model.no_code=true", f"max_steps={args.steps1}"]), None)
    for q in args.quantizers:
        s1 = train(f"{task}_stage1.yaml", base / f"{q}_stage1{tag}", [*common, f"model.quantizer={q}", f"max_steps={args.steps1}"])
        lm_over = [c for c in common if c.startswith(("data.", "log.", "checkpoint.", "seed=", "optim.ema"))]
        s2 = train(f"{task}_stage2.yaml", base / f"{q}_stage2{tag}",
                   [*lm_over, f"stage1={s1.resolve()}", f"lm.width={args.lm_width}", "lm.patch_size=8", "lm.heads=2",
                    f"lm.encoder_layers={args.lm_layers}", f"lm.decoder_layers={args.lm_layers}", f"lm.stem={args.lm_stem}",
                    f"optim.lr={args.lm_lr}",
                    f"optim.warmup_steps={args.lm_warmup}", f"max_steps={args.steps2}"])
        runs[q] = (s1, s2)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=Path, default=Path("runs/bench_uvim"))
    p.add_argument("--tasks", nargs="+", default=["depth"], choices=sorted(METRICS))
    p.add_argument("--quantizers", nargs="*", default=list(QUANTIZERS), choices=QUANTIZERS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (data and test split stay fixed)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lm-width", type=int, default=64)
    p.add_argument("--lm-layers", type=int, default=2, help="stage-II encoder and decoder layers (each)")
    p.add_argument("--lm-lr", type=float, default=1e-3)
    p.add_argument("--lm-stem", choices=("patch", "conv"), default="patch",
                   help="stage-II image stem (UViMLMConfig.stem): a linear patch embedding, or two 3x3 convs before it")
    p.add_argument("--lm-warmup", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-train", type=int, default=2048, help="training pairs (rendered once, kept in memory)")
    p.add_argument("--num-test", type=int, default=256)
    p.add_argument("--steps1", type=int, default=1000)
    p.add_argument("--steps2", type=int, default=1000)
    p.add_argument("--code-prefixes", nargs="*", type=int, default=[1, 4],
                   help="also score the oracle's and the LM's first k code tokens (the base model sees the rest dropped)")
    p.add_argument("--no-code", action=argparse.BooleanOptionalAction, default=True, help="train the no-code baseline")
    p.add_argument("--skip-eval", action="store_true", help="train only (e.g. several commands in parallel, then one to evaluate)")
    args = p.parse_args(argv)
    for task in args.tasks:
        runs = {seed: train_task(task, seed, args) for seed in args.seeds}
        if args.skip_eval:
            continue
        results = {seed: evaluate_task(task, r, args) for seed, r in runs.items()}
        out = {"scale": vars(args) | {"output_dir": str(args.output_dir), "tasks": [task]}, "results": {task: results}}
        stem = f"uvim_{task}" + ("" if args.seeds == [0] else "_seed" + "-".join(map(str, args.seeds)))
        (args.output_dir / f"{stem}.json").write_text(json.dumps(out, indent=2, default=str))
        (args.output_dir / f"{stem}.md").write_text(markdown({task: results}, args))
        print(markdown({task: results}, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
