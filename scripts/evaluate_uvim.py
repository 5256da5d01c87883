"""Evaluate saved UViM models; write a JSON report and a Markdown table (the sibling of scripts/evaluate.py).

    python scripts/evaluate_uvim.py --model fsq=runs/uvim/depth_stage2/model --real --output-dir runs/uvim/eval
    python scripts/evaluate_uvim.py --model a=DIR_A --model b=DIR_B --num 256 --fid
    python scripts/evaluate_uvim.py --model runs/uvim/depth_stage2/model --pairs mine=data/held_out --num 0 --output-dir out

Each ``--model [NAME=]DIR`` is a stage-II folder (scored as stage II, ``lm``: the code decoded from
the image, and as stage I, ``oracle``: the code made from the true target) or a stage-I folder
(``oracle``, or ``no_code`` for a model trained without a code). Data: ``--num`` items of the task's
synthetic test split at the model's size, plus for depth with ``--real`` the real motorcycle and castel
frames, plus each ``--pairs [NAME=]DIR``: held-out pairs of your own, in the folder layout that
``train_uvim.py data.source=folder`` reads (``fsqtok.data``'s paired sources, centre crops at the model's size;
set ``pairs NAME``). Pairs a model was trained on (its config.json's ``trained_on.train_data``) are refused:
they are not held out. Metrics: depth RMSE (m) / AbsRel / delta<1.25 on valid pixels; colorization PSNR and FD-chroma
(``--fid`` adds FID on Inception features); panoptic PQ / SQ / RQ; codebook usage and perplexity of
the codes; stage-II token accuracy against the oracle's codes. ``--code-tokens K`` adds the same scores
from the codes' first ``K`` tokens only (modes ``lm_firstK`` and ``oracle_firstK``; the rest dropped).

Writes ``<output-dir>/eval.json`` (``{"results": {name: {set: {mode: metrics}}}, "data": {set: fingerprint}}``,
each set named by its content hash, :func:`fsqtok.data.data_fingerprint`) and ``eval.md``.
Exit status: 0 done, 1 bad input, 2 bad arguments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from fsqtok.cli_support import OneLineParser, UsageError, exit_process, run_command
from fsqtok.datasets.real_depth import SOURCES, real_depth_frames
from fsqtok.datasets.uvim_pairs import UViMFolderPairs, UViMPairs
from fsqtok.generative.uvim.stage1 import UViMStage1
from fsqtok.generative.uvim.evaluation import evaluate
from fsqtok.generative.uvim.metrics import ColorizationMetrics
from fsqtok.generative.uvim.lm import UViMPipeline
from fsqtok.hub import read_config


def load(spec: str) -> tuple[str, UViMStage1, UViMPipeline | None]:
    name, sep, path = spec.partition("=")
    name, path = (name, path) if sep else (Path(spec).name, spec)
    if not name or not path:
        raise UsageError(f"--model {spec!r}: expected NAME=DIR or DIR")
    kind = read_config(path).get("model_type")
    if kind == "uvim_lm":
        pipe = UViMPipeline.from_pretrained(path)
        return name, pipe.stage1, pipe
    if kind == "uvim_stage1":
        return name, UViMStage1.from_pretrained(path), None
    raise ValueError(f"--model {path}: not a UViM model (model_type {kind!r})")


def stacked(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``{"image", "target"}`` item of ``ds`` as ``(images (N, 3, S, S), targets (N, C, S, S))``."""
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([i["image"] for i in items]), torch.stack([i["target"] for i in items])


def pair_specs(specs: list[str]) -> dict[str, str]:
    """``--pairs [NAME=]DIR`` -> ``{"pairs NAME": DIR}``."""
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = (name, path) if sep else (Path(spec).name, spec)
        if not name or not path or not Path(path).is_dir():
            raise UsageError(f"--pairs {spec!r}: expected [NAME=]DIR of an existing folder of pairs")
        out[f"pairs {name}"] = path
    return out


def data_sets(stage1: UViMStage1, num: int, real: bool, seed: int, pairs: dict[str, str],
              trained_on: set[str]) -> dict[str, tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """``{set name: (content fingerprint, (images, targets))}``: ``num`` synthetic test pairs, the real depth
    frames, and each folder of ``pairs``, refused when its fingerprint is among ``trained_on``."""
    task, size = stage1.config.task, stage1.config.image_size
    sets = {}
    if num:
        ds = UViMPairs(task, "test", num, size, seed)
        sets["synthetic test"] = (ds.fingerprint(), stacked(ds))
    if real and task == "depth":
        for source in SOURCES:
            sets[f"real {source}"] = (f"real_depth:{source}", real_depth_frames(source, size))
    for set_name, path in pairs.items():
        ds = UViMFolderPairs(task, path, size, train=False)
        if ds.fingerprint() in trained_on:
            raise ValueError(f"--pairs {path}: the model was trained on these pairs (its trained_on.train_data); "
                             "evaluate on held-out pairs")
        sets[set_name] = (ds.fingerprint(), stacked(ds))
    return sets


def batches(x: torch.Tensor, y: torch.Tensor, size: int):
    for i in range(0, len(x), size):
        yield {"image": x[i:i + size], "target": y[i:i + size]}


def markdown(results: dict) -> str:
    lines = ["| model | set | mode | metrics |", "| --- | --- | --- | --- |"]
    for name, sets in results.items():
        for set_name, modes in sets.items():
            for mode, m in modes.items():
                lines.append(f"| {name} | {set_name} | {mode} | " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    def body(argv: list[str]) -> int:
        p = OneLineParser(prog="evaluate_uvim.py", description=__doc__.split("\n\n")[0])
        p.add_argument("--model", action="append", required=True, help="[NAME=]DIR of a UViM model (repeatable)")
        p.add_argument("--num", type=int, default=128, help="synthetic test items (0: none, with --pairs)")
        p.add_argument("--pairs", action="append", default=[],
                       help="[NAME=]DIR of your held-out pairs (train_uvim.py's folder layout; repeatable)")
        p.add_argument("--seed", type=int, default=0, help="which synthetic test items")
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--real", action="store_true", help="depth: add the real motorcycle and castel frames")
        p.add_argument("--fid", action="store_true", help="colorization: add FID (Inception, slow on a CPU)")
        p.add_argument("--code-tokens", type=int, default=None,
                       help="also score the first K code tokens only (modes lm_firstK, oracle_firstK; the rest dropped)")
        p.add_argument("--output-dir", type=Path, required=True)
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        args = p.parse_args(argv)
        if not (args.num >= 2 or (args.num == 0 and args.pairs)) or args.batch_size < 1:
            raise UsageError("--num must be >= 2 (or 0 with --pairs) and --batch-size >= 1")
        pairs, results, fingerprints = pair_specs(args.pairs), {}, {}
        for spec in args.model:
            name, stage1, pipe = load(spec)
            if args.fid and stage1.config.task == "colorization":
                stage1.task.metrics = lambda: ColorizationMetrics(fid=True)  # this model's evaluation only
            modes = ("lm", "oracle") if pipe is not None else (("no_code",) if stage1.config.no_code else ("oracle",))
            runs = [(mode, mode, None) for mode in modes]
            if args.code_tokens is not None and not stage1.config.no_code:
                if not 1 <= args.code_tokens <= stage1.config.num_tokens:
                    raise UsageError(f"--code-tokens must be in 1..{stage1.config.num_tokens} for {name}, got {args.code_tokens}")
                runs += [(f"{mode}_first{args.code_tokens}", mode, args.code_tokens) for mode in modes]
            trained_on = {m.trained_on.get("train_data") for m in (stage1, pipe and pipe.lm) if m and m.trained_on}
            for set_name, (fingerprint, (x, y)) in data_sets(stage1, args.num, args.real, args.seed, pairs,
                                                             trained_on).items():
                fingerprints[set_name] = fingerprint
                for label, mode, k in runs:
                    m = evaluate(stage1, batches(x, y, args.batch_size), mode, pipe.lm if pipe else None, code_tokens=k)
                    results.setdefault(name, {}).setdefault(set_name, {})[label] = m
                    print(f"{name} {set_name} {label}: " + " ".join(f"{k}={v:.4g}" for k, v in m.items()), flush=True)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "eval.json").write_text(json.dumps({"results": results, "num": args.num, "seed": args.seed,
                                                               "data": fingerprints}, indent=2))
        (args.output_dir / "eval.md").write_text(markdown(results))
        return 0

    return run_command(body, argv)


if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))
