"""UViM at reduced scale: FSQ against VQ with and without codebook splitting (the FSQ paper's Table 3 setup).

    make reproduce-uvim     # = python -m benchmarks.reproduce.uvim, then the BENCHMARKS.md tables; resumable

For each task (``--tasks``: depth, colorization, panoptic), training seed (``--seeds``) and bottleneck
(``fsq``: FSQ [7,5,5,5,5], 4375 codes; ``vq_split``: VQ with 4096 EMA codes and big_vision's splitting;
``vq``: the same without splitting; colorization and panoptic run ``fsq`` and ``vq_split``) it trains
stage I, then stage II on that stage-I model, plus one no-code base model ``f(x, empty)``, all through
``recipes/train_uvim.py``, ``--jobs`` runs at a time (every run passes ``--resume``, so re-running the
command continues where it stopped and skips finished runs). It then evaluates on the synthetic test split
(and, for depth, the real motorcycle and castel frames): stage-I (oracle), stage-II and no-code metrics,
codebook usage over the test codes, stage-II token accuracy and the perplexity of the decoded codes; the
main metric (depth RMSE, colorization PSNR, panoptic PQ) also gets a 95% interval over test images and the
paired difference of stage II to the no-code model (:func:`interval`). Results: ``uvim_<task>.json`` and
``uvim_<task>.md`` in the output folder (``uvim_<task>_seed1-2.json`` ... for other ``--seeds``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from benchmarks.common import Lane, write_section
from fsqtok.datasets.real_depth import real_depth_frames
from fsqtok.datasets.uvim_pairs import UViMPairs
from fsqtok.generative.uvim.stage1 import UViMStage1
from fsqtok.generative.uvim.evaluation import evaluate, predict_batch
from fsqtok.generative.uvim.lm import STEMS, UViMPipeline
from fsqtok.generative.uvim.tasks import panoptic_quality_from_stats
from fsqtok.metrics import depth_errors, psnr

ROOT = Path(__file__).resolve().parents[2]

QUANTIZERS = ("fsq", "vq_split", "vq")
TASK_QUANTIZERS = {"depth": QUANTIZERS, "colorization": QUANTIZERS[:2], "panoptic": QUANTIZERS[:2]}  # the default
PAPER = {"depth": ("RMSE", {"vq_split": "0.468", "fsq": "0.473", "vq": "0.490"}),  # as printed in the paper
         "panoptic": ("PQ", {"vq_split": "43.4", "fsq": "43.2"}),
         "colorization": ("FID-5k", {"vq_split": "16.90", "fsq": "17.55"})}
METRICS = {"depth": ("rmse",), "panoptic": ("pq", "sq", "rq"), "colorization": ("psnr", "fd_chroma")}
PER_IMAGE = {"depth": "rmse", "colorization": "psnr", "panoptic": "pq"}  # the metric with intervals and paired differences


def scale_overrides(args) -> list[str]:
    """The reduced scale (stated in results.md)."""
    return [f"model.image_size={args.size}", f"model.width={args.width}", "model.blocks=1", "model.feature_down=2",
            "model.code_grid=4", "model.ema_decay=0.95", "model.split_threshold=0.001", f"data.num_train={args.num_train}", f"data.cache_dir={(args.output_dir / 'pairs').resolve()}",
            "data.num_val=16", f"data.batch_size={args.batch_size}", "optim.warmup_steps=50", "log.every=25",
            "log.media_every=0", "log.eval_every=0", "log.progress_bar=false", "checkpoint.every=100",
            "checkpoint.keep_last=1", "optim.ema_decay=0.0"]


def recipe_run(config: str, out: Path, overrides: list[str]) -> tuple[Path, list[str] | None]:
    """One recipe run: its model folder, and the command that trains (or continues) it; None when saved."""
    model = out / "model"
    if (model / "config.json").exists():
        return model, None
    return model, [sys.executable, str(ROOT / "recipes" / "train_uvim.py"), "--config",
                   str(ROOT / "recipes/configs/uvim" / config), f"output_dir={out}", *overrides, "--resume"]


def batches(x: torch.Tensor, y: torch.Tensor, size: int = 32):
    for i in range(0, len(x), size):
        yield {"image": x[i:i + size], "target": y[i:i + size]}


def per_image(stage1: UViMStage1, x, y, mode: str, lm=None, code_tokens: int | None = None) -> torch.Tensor:
    """Each test image's share of the task's main metric: ``(N,)`` depth RMSE or colorization PSNR, or
    ``(N, 4, categories)`` panoptic scene statistics (PQ is a set-level figure: see :func:`interval`)."""
    task, values = stage1.config.task, []
    for b in batches(x, y):
        pred, _ = predict_batch(stage1, b["image"], b["target"], mode, lm, code_tokens)
        values.append(depth_errors(pred, b["target"])["rmse"] if task == "depth" else psnr(pred, b["target"])
                      if task == "colorization" else stage1.task.metrics().scene_stats(pred, b["target"]))
    return torch.cat(values)


def interval(task: str, v: torch.Tensor, ref: torch.Tensor | None = None, reps: int = 2000) -> dict[str, float]:
    """The main metric's 95% interval over test images and, given the no-code model's ``ref`` on the same
    images, the paired difference and its interval. Per-image metrics: mean and normal interval of the
    values (and of the per-image differences). Panoptic PQ: the set's PQ and 1.96 x the standard
    deviation of PQ over ``reps`` bootstrap resamples of the scenes (the difference on the same resamples)."""
    key = PER_IMAGE[task]
    out: dict[str, float] = {}
    if task != "panoptic":
        out[f"{key}_mean_per_image"], out[f"{key}_ci95"] = mean_ci(v)
        if ref is not None:
            out[f"{key}_minus_no_code"], out[f"{key}_minus_no_code_ci95"] = mean_ci(v - ref)
        return out
    pq = panoptic_quality_from_stats
    idx = torch.randint(0, len(v), (reps, len(v)), generator=torch.Generator().manual_seed(0))
    boot = torch.tensor([pq(v[i].sum(0))["pq"] for i in idx], dtype=torch.float64)
    out["pq_ci95"] = float(1.96 * boot.std())
    if ref is not None:
        diff = boot - torch.tensor([pq(ref[i].sum(0))["pq"] for i in idx], dtype=torch.float64)
        out["pq_minus_no_code"] = pq(v.sum(0))["pq"] - pq(ref.sum(0))["pq"]
        out["pq_minus_no_code_ci95"] = float(1.96 * diff.std())
    return out


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
                if mode == "no_code":
                    no_code[set_name] = v
                m.update(interval(task, v, no_code.get(set_name) if mode == "lm" else None))
                row[label] = m
            print(task, name, set_name, json.dumps(row), flush=True)
    return results


def command_line(args) -> str:
    """The command that reproduces ``args``: the flags that differ from the defaults (not where it writes)."""
    defaults, flags = vars(parser().parse_args([])), []
    for k, v in vars(args).items():
        if v == defaults[k] or k in ("output_dir", "write_benchmarks", "copy_to", "jobs", "skip_eval"):
            continue
        flag = "--" + k.replace("_", "-")
        flags.append((flag if v else "--no-" + flag[2:]) if isinstance(v, bool) else
                     f"{flag} {' '.join(map(str, v)) if isinstance(v, list) else v}")
    return " ".join(["python -m benchmarks.reproduce.uvim", *flags])


def markdown(task: str, by_seed: dict, args) -> str:
    """The task's table: a row per model, seed and test set, the paper's figure beside ours."""
    names, key, (paper_name, paper) = METRICS[task], PER_IMAGE[task], PAPER[task]
    lines = [f"`{command_line(args)}` (resumable). Scale: {args.size}x{args.size} images, 16-token guide code (4x4), "
             f"conv stage I of width {args.width}; stage II a {args.lm_layers}+{args.lm_layers}-layer transformer of "
             f"width {args.lm_width} on 8x8 patches ({args.lm_stem} stem), lr {args.lm_lr}; {args.steps1} stage-I and "
             f"{args.steps2} stage-II steps of batch {args.batch_size} on {args.num_train} and {args.lm_num_train} "
             "training pairs; "
             f"{args.num_test} synthetic test images. +/- is a 95% interval over test images "
             f"({'bootstrap over scenes' if task == 'panoptic' else 'normal'}); 'II - no code' is the paired "
             f"difference of stage II to the no-code model on the same images. Metrics: {' / '.join(names)}.\n",
             f"| model | seed | test set | stage I (oracle) | stage II | no code | II - no code | stage II from the "
             f"first token | stage-II token accuracy / decoded-code perplexity | stage-I codebook usage | training wall, "
             f"I + II (min) | paper {paper_name} |", "|" + " --- |" * 12]

    def pm(value: float, ci: float | None) -> str:  # no interval for a single image (NaN)
        return f"{value:.3f}" + (f" +/- {ci:.3f}" if ci is not None and math.isfinite(ci) else "")

    def cell(m: dict | None) -> str:
        return "" if m is None else " / ".join(pm(m[k], m.get(f"{k}_ci95") if k == key else None) for k in names)
    for seed, res in by_seed.items():
        for name, sets in res.items():
            wall = " + ".join(f"{v / 60:.1f}" for v in sets["train_wall_s"].values())
            for set_name, row in ((k, v) for k, v in sets.items() if k != "train_wall_s"):
                s2, usage = row.get("stage2", {}), row.get("stage1", {}).get("codebook_usage")
                diff = (("+" if s2[f"{key}_minus_no_code"] >= 0 else "") + pm(s2[f"{key}_minus_no_code"],
                                                                             s2[f"{key}_minus_no_code_ci95"])
                        if f"{key}_minus_no_code" in s2 else "")
                lm = f"{100 * s2['token_accuracy']:.1f}% / {s2['perplexity']:.1f}" if "token_accuracy" in s2 else ""
                first = f"{row['stage2_first1'][names[0]]:.3f}" if "stage2_first1" in row else ""
                lines.append(f"| {name} | {seed} | {set_name} | {cell(row.get('stage1'))} | {cell(row.get('stage2'))} | "
                             f"{cell(row.get('no_code'))} | {diff} | {first} | {lm} | "
                             f"{'' if usage is None else f'{100 * usage:.1f}%'} | {wall} | {paper.get(name, '')} |")
    return "\n".join(lines) + "\n"


Run = tuple[Path, "list[str] | None"]  # a model folder, and the command that trains it (None: saved)


def plan_task(task: str, seed: int, args) -> dict[str, tuple[Run, Run | None]]:
    """Every run of ``task`` for one training seed: ``{name: (stage I, stage II or None)}``."""
    common = [*scale_overrides(args), f"seed={seed}"]
    base, tag = args.output_dir / task, f"_seed{seed}" if seed else ""
    runs: dict[str, tuple[Run, Run | None]] = {}
    if args.no_code:
        runs["no_code"] = (recipe_run(f"{task}_stage1.yaml", base / f"no_code_stage1{tag}",
                                      [*common, "model.no_code=true", f"max_steps={args.steps1}"]), None)
    lm_over = [c for c in common if c.startswith(("data.", "log.", "checkpoint.", "seed=", "optim.ema"))
               and not c.startswith("data.num_train=")]
    for q in TASK_QUANTIZERS[task] if args.quantizers is None else args.quantizers:
        s1 = recipe_run(f"{task}_stage1.yaml", base / f"{q}_stage1{tag}",
                        [*common, f"model.quantizer={q}", f"max_steps={args.steps1}"])
        s2 = recipe_run(f"{task}_stage2.yaml", base / f"{q}_stage2{tag}",
                        [*lm_over, f"stage1={s1[0].resolve()}", f"lm.width={args.lm_width}", "lm.patch_size=8",
                         "lm.heads=2", f"lm.encoder_layers={args.lm_layers}", f"lm.decoder_layers={args.lm_layers}",
                         f"lm.stem={args.lm_stem}", f"optim.lr={args.lm_lr}", f"optim.warmup_steps={args.lm_warmup}",
                         f"max_steps={args.steps2}", f"data.num_train={args.lm_num_train}"])
        runs[q] = (s1, s2)
    return runs


def train_all(plans: dict[tuple[str, int], dict[str, tuple[Run, Run | None]]], args) -> None:
    """Train every unfinished run, ``--jobs`` at a time: all stage-I models first, then every stage II
    (each needs its stage-I model). A run's output goes to ``logs/<task>_<run folder>.log``."""
    lane = Lane(args.output_dir / "lane.json", args.jobs, ROOT, "bench_uvim")
    for stage in (0, 1):
        todo = [(cmd, args.output_dir / "logs" / f"{task}_{model.parent.name}.log")
                for (task, _), runs in plans.items() for pair in runs.values()
                if pair[stage] is not None for model, cmd in [pair[stage]] if cmd is not None]
        lane.run([c for c, _ in todo], [log for _, log in todo])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=Path, default=Path("runs/bench_uvim"))
    p.add_argument("--tasks", nargs="+", default=list(TASK_QUANTIZERS), choices=sorted(METRICS))
    p.add_argument("--quantizers", nargs="*", choices=QUANTIZERS,
                   help="bottlenecks to train (default: all three for depth, fsq and vq_split for the others)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (data and test split stay fixed)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lm-width", type=int, default=64)
    p.add_argument("--lm-layers", type=int, default=2, help="stage-II encoder and decoder layers (each)")
    p.add_argument("--lm-lr", type=float, default=1e-3)
    p.add_argument("--lm-stem", choices=STEMS, default="stage1",
                   help="stage-II image stem (UViMLMConfig.stem): a linear patch embedding, two 3x3 convs before it, "
                        "or the stage-I base model's image trunk (initialised from it)")
    p.add_argument("--lm-warmup", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-train", type=int, default=2048, help="training pairs (rendered once, kept in memory)")
    p.add_argument("--num-test", type=int, default=256)
    p.add_argument("--steps1", type=int, default=1000)
    p.add_argument("--steps2", type=int, default=4000)
    p.add_argument("--lm-num-train", type=int, default=16384,
                   help="stage-II training pairs (rendered once; the LM is data-limited at 2,048, BENCHMARKS.md)")
    p.add_argument("--code-prefixes", nargs="*", type=int, default=[1, 4],
                   help="also score the oracle's and the LM's first k code tokens (the base model sees the rest dropped)")
    p.add_argument("--no-code", action=argparse.BooleanOptionalAction, default=True, help="train the no-code baseline")
    p.add_argument("--jobs", type=int, default=2, help="training runs at a time (one CPU thread each)")
    p.add_argument("--skip-eval", action="store_true", help="train only")
    p.add_argument("--write-benchmarks", action="store_true", help="write each task's table into BENCHMARKS.md")
    p.add_argument("--copy-to", type=Path, help="also copy each task's results JSON into this folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plans = {(task, seed): plan_task(task, seed, args) for task in args.tasks for seed in args.seeds}
    train_all(plans, args)
    for task in [] if args.skip_eval else args.tasks:
        results = {seed: evaluate_task(task, {name: (s1[0], s2[0] if s2 else None) for name, (s1, s2)
                                              in plans[task, seed].items()}, args) for seed in args.seeds}
        out = {"command": command_line(args), "scale": vars(args) | {"output_dir": str(args.output_dir), "tasks": [task]},
               "results": {task: results}}
        stem = f"uvim_{task}" + ("" if args.seeds == [0] else "_seed" + "-".join(map(str, args.seeds)))
        text, table = json.dumps(out, indent=2, default=str), markdown(task, results, args)
        for folder in filter(None, (args.output_dir, args.copy_to)):
            (folder / f"{stem}.json").write_text(text)
        (args.output_dir / f"{stem}.md").write_text(table)
        if args.write_benchmarks:
            write_section(stem.replace("_", "-"), table)
        print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
