"""UViM at reduced scale: FSQ against VQ with and without codebook splitting (the FSQ paper's Table 3 setup).

    OMP_NUM_THREADS=1 nohup python benchmarks/bench_uvim.py --output-dir runs/bench_uvim &   # resumable

For each task and bottleneck (``fsq``: FSQ [7,5,5,5,5], 4375 codes; ``vq_split``: VQ with 4096 EMA codes and
big_vision's splitting; ``vq``: the same without splitting) it trains stage I, then stage II on that stage-I
model, plus one no-code base model ``f(x, empty)`` per task, all through ``recipes/train_uvim.py`` (every run
passes ``--resume``, so re-running the command continues where it stopped and skips finished runs). It then
evaluates on the synthetic test split (and, for depth, the real motorcycle and castel frames): stage-I
(oracle) and stage-II metrics, codebook usage over the test codes, and for depth a 95% confidence interval
of the RMSE over test images. Results: ``results.json`` and ``results.md`` in the output folder.
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
from fsqtok.metrics import depth_errors  # noqa: E402

QUANTIZERS = ("fsq", "vq_split", "vq")
PAPER = {"depth": ("RMSE", {"vq_split": 0.468, "fsq": 0.473, "vq": 0.490}),
         "panoptic": ("PQ", {"vq_split": 43.4, "fsq": 43.2}),
         "colorization": ("FID-5k", {"vq_split": 16.90, "fsq": 17.55})}
MAIN_METRIC = {"depth": "rmse", "panoptic": "pq", "colorization": "fd_chroma"}


def scale_overrides(args) -> list[str]:
    """The reduced scale (stated in results.md)."""
    return [f"model.image_size={args.size}", f"model.width={args.width}", "model.blocks=1", "model.feature_down=2",
            "model.code_grid=4", "model.ema_decay=0.95", "model.split_threshold=0.001", f"data.num_train={args.num_train}", "data.cache=true",
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


def rmse_ci(stage1: UViMStage1, x, y, mode: str, lm=None) -> tuple[float, float]:
    """Mean per-image RMSE and the half-width of its 95% normal confidence interval."""
    values = []
    for b in batches(x, y):
        pred, _ = predict_batch(stage1, b["image"], b["target"], mode, lm)
        values.append(depth_errors(pred, b["target"])["rmse"])
    v = torch.cat(values)
    v = v[~torch.isnan(v)]
    return float(v.mean()), float(1.96 * v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def evaluate_task(task: str, runs: dict[str, tuple[Path, Path | None]], args) -> dict:
    data = UViMPairs(task, "test", args.num_test, args.size, seed=0)
    items = [data[i] for i in range(len(data))]
    sets = {"synthetic test": (torch.stack([i["image"] for i in items]), torch.stack([i["target"] for i in items]))}
    if task == "depth":
        for source in ("motorcycle", "castel"):
            sets[f"real {source}"] = real_depth_frames(source, args.size)
    results: dict = {}
    for name, (s1_dir, lm_dir) in runs.items():
        stage1 = UViMStage1.from_pretrained(s1_dir)
        pipe = UViMPipeline.from_pretrained(lm_dir) if lm_dir is not None else None
        for set_name, (x, y) in sets.items():
            row = results.setdefault(name, {}).setdefault(set_name, {})
            modes = ("no_code",) if pipe is None else ("oracle", "lm")
            for mode in modes:
                m = evaluate(stage1, batches(x, y), mode, pipe.lm if pipe else None)
                if task == "depth":
                    m["rmse_mean_per_image"], m["rmse_ci95"] = rmse_ci(stage1, x, y, mode, pipe.lm if pipe else None)
                row[{"oracle": "stage1", "lm": "stage2", "no_code": "no_code"}[mode]] = m
            print(task, name, set_name, json.dumps(row), flush=True)
    return results


def markdown(all_results: dict, args) -> str:
    lines = [f"# UViM: FSQ vs VQ at reduced scale\n",
             f"Scale: {args.size}x{args.size} images, 16-token guide code (4x4), conv stage I of width {args.width}, "
             f"stage II 2+2-layer transformer of width {args.lm_width} on 8x8 patches; {args.steps1} stage-I and {args.steps2} stage-II steps of "
             f"batch {args.batch_size}; synthetic test split of {args.num_test} images. One seed; "
             "+/- is the 95% interval over test images. The paper: 512x512 NYU, 256-token code, ViT-L, 4096/4375 codes.\n"]
    for task, res in all_results.items():
        metric = MAIN_METRIC[task]
        paper_name, paper = PAPER[task]
        lines.append(f"## {task}\n")
        lines.append(f"| model | set | stage I (oracle) {metric} | stage II {metric} | no-code {metric} | codebook usage (stage I codes) | paper {paper_name} |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for name, sets in res.items():
            for set_name, row in sets.items():
                def cell(mode: str) -> str:
                    m = row.get(mode)
                    if m is None:
                        return ""
                    if task == "depth":
                        return f"{m['rmse_mean_per_image']:.3f} +/- {m['rmse_ci95']:.3f}"
                    return f"{m[metric]:.3f}"
                usage = row.get("stage1", {}).get("codebook_usage")
                lines.append(f"| {name} | {set_name} | {cell('stage1')} | {cell('stage2')} | {cell('no_code')} | "
                             f"{'' if usage is None else f'{100 * usage:.2f}%'} | {paper.get(name, '')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=Path, default=Path("runs/bench_uvim"))
    p.add_argument("--tasks", nargs="+", default=["depth"], choices=sorted(MAIN_METRIC))
    p.add_argument("--quantizers", nargs="*", default=list(QUANTIZERS), choices=QUANTIZERS)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lm-width", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-train", type=int, default=1024, help="training pairs (rendered once, kept in memory)")
    p.add_argument("--num-test", type=int, default=64)
    p.add_argument("--steps1", type=int, default=300)
    p.add_argument("--steps2", type=int, default=300)
    p.add_argument("--no-code", action=argparse.BooleanOptionalAction, default=True, help="train the no-code baseline")
    p.add_argument("--skip-eval", action="store_true", help="train only (e.g. several commands in parallel, then one to evaluate)")
    args = p.parse_args(argv)
    common = scale_overrides(args)
    all_results = {}
    for task in args.tasks:
        runs: dict[str, tuple[Path, Path | None]] = {}
        base = args.output_dir / task
        if args.no_code:
            runs["no_code"] = (train(f"{task}_stage1.yaml", base / "no_code_stage1",
                                     [*common, "model.no_code=true", f"max_steps={args.steps1}"]), None)
        for q in args.quantizers:
            s1 = train(f"{task}_stage1.yaml", base / f"{q}_stage1", [*common, f"model.quantizer={q}",
                                                                     f"max_steps={args.steps1}"])
            lm_over = [c for c in common if c.startswith(("data.", "optim.", "log.", "checkpoint."))]
            s2 = train(f"{task}_stage2.yaml", base / f"{q}_stage2", [*lm_over, f"stage1={s1.resolve()}", f"lm.width={args.lm_width}",
                                                                     "lm.patch_size=8", "lm.heads=2", f"max_steps={args.steps2}"])
            runs[q] = (s1, s2)
        if not args.skip_eval:
            all_results[task] = evaluate_task(task, runs, args)
    if args.skip_eval:
        return 0
    out = {"scale": vars(args) | {"output_dir": str(args.output_dir)}, "results": all_results}
    (args.output_dir / "results.json").write_text(json.dumps(out, indent=2, default=str))
    (args.output_dir / "results.md").write_text(markdown(all_results, args))
    print(markdown(all_results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
