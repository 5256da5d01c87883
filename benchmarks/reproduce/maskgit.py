"""MaskGIT on FSQ against VQ tokens, on Fashion-MNIST, and the codebook-size study (issue 11's reproduction).

    python -m benchmarks.reproduce.maskgit --part main  [--root runs/bench_maskgit]
    python -m benchmarks.reproduce.maskgit --part study [--root runs/bench_maskgit]
    python -m benchmarks.reproduce.maskgit_report --root runs/bench_maskgit   # tables -> BENCHMARKS.md, figure -> docs/

Two independent parts (run them one after the other or side by side); each is resumable: every stage
skips what its outputs already hold, so re-running continues where it stopped.

**main** (the paper's FSQ [8,5,5,5] against VQ with 1024 codes):

1. data: Fashion-MNIST's raw files (:mod:`fsqtok.datasets.fashion_mnist`) exported to class folders:
   train = training images 0..54999, val1k = 55000..55999, the first ``--num-train-tokens`` for MaskGIT, test.
2. classifier: ``scripts/train_classifier.py`` (features for the Frechet classifier distance).
3. tokenizers (``recipes/train_tokenizer.py``, 28x28 -> f=4 -> 7x7 = 49 tokens): FSQ [8,5,5,5] and VQ with
   1024 codes of dimension 4 (the same network, data and steps); VQ has an EMA codebook and dead-code
   restarts (a code is re-seeded when its EMA usage falls below ``--dead-code-factor`` of the uniform rate).
4. tokenizer metrics on the first ``--num-recon`` test images: PSNR, SSIM, the classifier distance of
   reconstructions, codebook usage and index entropy of the test tokens.
5. ``fsqtok tokenize`` of the MaskGIT train images and the test images.
6. MaskGIT (``recipes/train_maskgit.py``) on each, ``--seeds`` training seeds.
7. sampling settings tuned on a validation split (train 56000..), the same grid for both, on seed 0's model.
8. ``--num-samples`` conditional samples from every trained seed (sampling seed = training seed), scored
   against test with ``scripts/evaluate_generation.py`` (classifier features, bootstrap interval, floor).
9. the seeds' samples pooled into one set of seeds x ``--num-samples``, scored against as many test images.
10. Inception FID of seed 0's samples on ``--inception-num`` images per set.

**study** (the paper's codebook sizes 2^8..2^16, FSQ levels and VQ with as many codes): tokenizers of
``--study-steps``, their metrics, and up to 2^``--study-maskgit-max`` codes a MaskGIT per tokenizer, sampled
with one fixed setting for both (``STUDY_SAMPLING``) and scored on ``--num-study-samples``.

Writes ``ROOT/results_<part>.json`` (every figure and each stage's wall time). Each process runs with
``OMP_NUM_THREADS=1``, ``--jobs`` at a time.

Length: about 370 lines, over the ~300 guideline: the ten stages of one resumable reproduction read best
in order in one file; each stage is a short method.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from benchmarks.common import Lane
from fsqtok.metrics.classifier import classifier_features, load_classifier
from fsqtok.metrics.frechet import feature_frechet_distance
from fsqtok.metrics.generation import features, token_usage

REPO = Path(__file__).resolve().parents[2]

MAIN = {"fsq": [8, 5, 5, 5], "vq": [8, 8, 4, 4]}  # VQ: prod = 1024 codes of dimension len = 4, as FSQ's latent
STUDY_LEVELS = {8: [8, 6, 5], 10: [8, 5, 5, 5], 12: [7, 5, 5, 5, 5], 14: [8, 8, 8, 6, 5], 16: [8, 8, 8, 5, 5, 5]}
PAPER = {"FSQ [8,5,5,5]": {"fid": 4.53, "usage": 1.00}, "VQ 1024": {"fid": 4.51, "usage": 0.81},
         "scale": "ImageNet at 256x256 (1.28M training images), 16x16 = 256 tokens per image, a full-size "
                  "MaskGIT transformer and tokenizers trained on accelerators, Inception FID on 50k samples"}
TOKENIZER_NET = {"base_channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "mid_attention": True}
TOKENIZER_BATCH, TOKENS_PER_IMAGE = 32, 49
GRID = [{"temperature": 1.0, "noise": 4.5, "guidance": 0.0}, {"temperature": 1.0, "noise": 1.0, "guidance": 0.0},
        {"temperature": 1.0, "noise": 4.5, "guidance": 1.0}, {"temperature": 1.0, "noise": 1.0, "guidance": 1.0},
        {"temperature": 1.0, "noise": 4.5, "guidance": 2.0}]
STUDY_SAMPLING = {"temperature": 1.0, "noise": 4.5, "guidance": 1.0}  # the main part's choice for both last run


def tokenizer_config(root: Path, out: Path, quantizer: str, levels: list[int], steps: int,
                     dead_code_factor: float) -> dict[str, Any]:
    """A train_tokenizer.py config; VQ's dead-code threshold is ``dead_code_factor`` x the uniform EMA usage."""
    tok: dict[str, Any] = {"quantizer": quantizer, "levels": levels, **TOKENIZER_NET}
    if quantizer == "vq" and dead_code_factor > 0:
        tok["vq_dead_code_threshold"] = dead_code_factor * TOKENIZER_BATCH * TOKENS_PER_IMAGE / math.prod(levels)
    return {"modality": "image", "output_dir": str(out), "max_steps": steps, "seed": 0, "tokenizer": tok,
            "data": {"source": "folder", "path": str(root / "data/train"), "val_path": str(root / "data/val1k"),
                     "size": 28, "batch_size": TOKENIZER_BATCH},
            "optim": {"lr": 2e-3, "warmup_steps": max(10, steps // 15), "min_lr_ratio": 0.05, "ema_decay": 0.99},
            "log": {"every": 25, "media_every": 0, "eval_every": 0, "tensorboard": False, "progress_bar": False},
            "checkpoint": {"every": 100, "keep_last": 1}}


class Sampling(NamedTuple):
    """One sampling job: ``n`` samples of token set ``name``'s seed-``seed`` MaskGIT (sampling seed = ``seed``)
    into ``samples/NAME/TAG``, scored against ``reference`` (and the real-vs-real ``floor``)."""

    name: str
    seed: int
    tag: str
    setting: dict[str, float]
    n: int
    reference: str
    floor: str | None = None
    bootstrap: int = 0


class Bench(Lane):
    """One part's stages over ``ROOT``; ``self.sets`` names each token set: name -> (quantizer, levels, steps)."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(Path(args.root).resolve() / f"results_{args.part}.json", args.jobs, REPO, "bench_maskgit")
        self.args, self.root = args, Path(args.root).resolve()
        if args.part == "main":
            self.sets = {f"main_{q}": (q, lv, args.tokenizer_steps) for q, lv in MAIN.items()}
            self.seeds = {name: list(range(args.seeds)) for name in self.sets}
        else:
            names = {bits: [f"{q}_{'-'.join(map(str, lv))}" for q in ("fsq", "vq")] for bits, lv in STUDY_LEVELS.items()}
            self.sets = {name: (name[:name.index("_")], STUDY_LEVELS[bits], args.study_steps)
                         for bits, pair in names.items() for name in pair}
            # by the paper's nominal size: [7,5,5,5,5] (4375 codes) is its "2^12"
            self.seeds = {name: [0] for bits, pair in names.items() if bits <= args.study_maskgit_max for name in pair}

    def tok_dir(self, name: str) -> Path:
        return self.root / f"tok/{name}"

    # ------------------------------------------------------------------ stages
    def data(self) -> bool:
        from fsqtok.datasets.fashion_mnist import export_image_folder

        parts = {"train": ("train", slice(0, 55000)), "val1k": ("train", slice(55000, 56000)),
                 f"train_tokens{self.args.num_train_tokens}": ("train", slice(0, self.args.num_train_tokens)),
                 "test": ("test", None)}
        todo = {k: v for k, v in parts.items() if not (self.root / "data" / k / "DONE").exists()}
        for name, (split, sel) in todo.items():
            export_image_folder(split, self.root / "data" / name, indices=sel)
            (self.root / "data" / name / "DONE").write_text("")
        return bool(todo)

    def classifier(self) -> bool:
        if (self.root / "classifier/classifier.json").is_file():
            return False
        self.run([[sys.executable, "scripts/train_classifier.py", "--output-dir", str(self.root / "classifier")]],
                 [self.root / "logs/classifier.log"])
        return True

    def tokenizers(self) -> bool:
        cmds, logs = [], []
        for name, (q, lv, steps) in self.sets.items():
            out = self.tok_dir(name)
            if (out / "tokenizer/config.json").is_file():
                continue
            cfg = self.root / f"cfg/{name}.yaml"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(yaml.safe_dump(tokenizer_config(self.root, out, q, lv, steps, self.args.dead_code_factor),
                                          sort_keys=False))
            cmds.append([sys.executable, "recipes/train_tokenizer.py", "--config", str(cfg), "--resume"])
            logs.append(self.root / f"logs/{name}.log")
        self.run(cmds, logs)
        return bool(cmds)

    def tokenizer_eval(self) -> bool:
        import fsqtok
        from fsqtok.datasets.fashion_mnist import load_fashion_mnist, to_tensor
        from fsqtok.metrics import psnr, ssim

        done = self.results.setdefault("tokenizers", {})
        todo = [n for n in self.sets if n not in done]
        if not todo:
            return False
        images, _ = load_fashion_mnist("test")
        x = to_tensor(images[: self.args.num_recon])
        clf = classifier_features(load_classifier(self.root / "classifier")[0])
        f_real = features(clf, x)
        ci = lambda v: 1.96 * float(v.std()) / math.sqrt(len(v))  # noqa: E731
        for name in todo:
            q, lv, steps = self.sets[name]
            tok = fsqtok.load_tokenizer(str(self.tok_dir(name) / "tokenizer")).eval()
            t0 = time.perf_counter()
            with torch.inference_mode():
                idx = torch.cat([tok.encode(x[i:i + 250]) for i in range(0, len(x), 250)])
                y = torch.cat([tok.decode(idx[i:i + 250], input_shape=(len(idx[i:i + 250]), 3, 28, 28))
                               for i in range(0, len(x), 250)]).clamp(-1, 1)
            p, s = psnr(x, y), ssim(x, y)
            done[name] = {"quantizer": q, "levels": lv, "codebook_size": tok.codebook_size, "train_steps": steps,
                          "dead_code_threshold": getattr(tok.config, "vq_dead_code_threshold", 0.0),
                          "images": len(x), "psnr": float(p.mean()), "psnr_ci95": ci(p), "ssim": float(s.mean()),
                          "ssim_ci95": ci(s), "fcd_reconstruction": feature_frechet_distance(f_real, features(clf, y)),
                          **token_usage(idx, tok.codebook_size), "eval_seconds": round(time.perf_counter() - t0, 1)}
            self.save()
        return True

    def tokenize(self) -> bool:
        cmds, logs = [], []
        folders = {"train": f"train_tokens{self.args.num_train_tokens}", "test": "test"}
        for name in self.seeds:
            for split, folder in folders.items():
                out = self.root / f"shards/{name}/{split}"
                if (out / "manifest.json").is_file():
                    continue
                cmds.append([sys.executable, "-m", "fsqtok.cli", "tokenize", "--tokenizer", str(self.tok_dir(name) / "tokenizer"),
                             "--data", str(self.root / "data" / folder), "--output", str(out), "--labels", "folder",
                             "--size", "28", "--num-workers", "0", "--batch-size", "100"])
                logs.append(self.root / f"logs/tokenize_{name}_{split}.log")
        self.run(cmds, logs)
        return bool(cmds)

    def maskgit(self) -> bool:
        cmds, logs = [], []
        a = self.args
        steps = a.maskgit_steps if a.part == "main" else a.study_maskgit_steps
        for name, seeds in self.seeds.items():
            for seed in seeds:
                out = self.root / f"maskgit/{name}/seed{seed}"
                if (out / "maskgit/config.json").is_file():
                    continue
                cmds.append([sys.executable, "recipes/train_maskgit.py", "--config", "recipes/configs/maskgit/fashion_mnist.yaml",
                             "--resume", f"output_dir={out}", f"seed={seed}", f"data.train={self.root / f'shards/{name}/train'}",
                             f"data.val={self.root / f'shards/{name}/test'}", f"max_steps={steps}",
                             f"model.width={a.maskgit_width}", f"model.depth={a.maskgit_depth}", "model.heads=4",
                             "data.batch_size=64", f"optim.warmup_steps={max(10, steps // 10)}", "optim.lr=1e-3",
                             "optim.ema_decay=0.99", f"sample.every={steps}", "log.every=50",
                             f"log.eval_every={steps}", "log.progress_bar=false", "checkpoint.every=200",
                             "checkpoint.keep_last=1"])
                logs.append(self.root / f"logs/maskgit_{name}_seed{seed}.log")
        self.run(cmds, logs)
        return bool(cmds)

    def sample_and_score(self, jobs: list[Sampling]) -> list[dict[str, Any]]:
        """Sample and score every job (the missing ones, ``--jobs`` processes at a time); their reports in order."""
        outs = [self.root / f"samples/{j.name}/{j.tag}" for j in jobs]
        cmds, logs = [], []
        for j, out in zip(jobs, outs):
            if not (out / "samples.json").is_file():
                cmds.append([sys.executable, "scripts/sample_maskgit.py", "--num-samples", str(j.n), "--steps", "12",
                             "--model", str(self.root / f"maskgit/{j.name}/seed{j.seed}/maskgit"), "--seed", str(j.seed),
                             "--output-dir", str(out), "--tokens-out", str(out / "tokens"),
                             *[f"--{k}={v}" for k, v in j.setting.items()]])
                logs.append(self.root / f"logs/sample_{j.name}_{j.tag}.log")
        self.run(cmds, logs)
        cmds, logs = [], []
        for j, out in zip(jobs, outs):
            if not (out / "eval/generation.json").is_file():
                cmds.append([sys.executable, "scripts/evaluate_generation.py", "--generated", str(out), "--reference",
                             j.reference, "--classifier", str(self.root / "classifier"), "--tokens", str(out / "tokens"),
                             "--codebook-size", str(self.results["tokenizers"][j.name]["codebook_size"]), "--inception",
                             "off", "--bootstrap", str(j.bootstrap), "--cache-dir", str(self.root / "cache"),
                             "--output-dir", str(out / "eval"), *(["--floor-reference", j.floor] if j.floor else [])])
                logs.append(self.root / f"logs/eval_{j.name}_{j.tag}.log")
        self.run(cmds, logs)
        return [json.loads((out / "eval/generation.json").read_text()) for out in outs]

    def tune(self) -> bool:
        tuned = self.results.setdefault("tuning", {})
        todo = [name for name in self.seeds if name not in tuned] if self.args.part == "main" else []
        n = self.args.num_tune
        jobs = [Sampling(name, 0, f"tune{i}", setting, n, f"fashion-mnist:train:56000:{56000 + n}")
                for name in todo for i, setting in enumerate(GRID)]
        reports = iter(self.sample_and_score(jobs))
        for name in todo:
            scores = [{**setting, "fcd": r["classifier"]["frechet_distance"], "class_accuracy": r["class_accuracy"]}
                      for setting, r in zip(GRID, reports)]
            tuned[name] = {"grid": scores, "best": min(scores, key=lambda s: s["fcd"])}
        self.save()
        return bool(todo)

    def final(self) -> bool:
        final = self.results.setdefault("generation", {})
        main = self.args.part == "main"
        n = self.args.num_samples if main else self.args.num_study_samples
        todo = [(name, s) for name, seeds in self.seeds.items() for s in seeds if f"{name}/seed{s}" not in final]
        settings = [{k: self.results["tuning"][name]["best"][k] for k in ("temperature", "noise", "guidance")}
                    if main else STUDY_SAMPLING for name, _ in todo]
        jobs = [Sampling(name, seed, f"final_seed{seed}", setting, n, f"fashion-mnist:test:0:{n}",
                         f"fashion-mnist:train:55000:{55000 + n}", 50 if main else 0)
                for (name, seed), setting in zip(todo, settings)]
        for job, report in zip(jobs, self.sample_and_score(jobs)):
            final[f"{job.name}/seed{job.seed}"] = {"setting": job.setting, **report}
        self.save()
        return bool(todo)

    def pooled(self) -> bool:
        """Every seed's final samples of a main set pooled into one set (``samples/NAME/pooled``: links and the
        labels in ``samples.json``), scored against as many test images: the 3 x N-sample evaluation at 3N."""
        pooled = self.results.setdefault("pooled", {})
        todo = [name for name in self.seeds if name not in pooled] if self.args.part == "main" else []
        for name in todo:
            out = self.root / f"samples/{name}/pooled"
            (out / "images").mkdir(parents=True, exist_ok=True)
            labels = []
            for seed in self.seeds[name]:
                src = self.root / f"samples/{name}/final_seed{seed}"
                labels += json.loads((src / "samples.json").read_text())["labels"]
                for f in sorted((src / "images").glob("*.png")):
                    link = out / "images" / f"s{seed}_{f.name}"
                    if not link.exists():
                        link.symlink_to(f)
            (out / "samples.json").write_text(json.dumps({"labels": labels}) + "\n")
        n = len(self.seeds[todo[0]]) * self.args.num_samples if todo else 0
        missing = [name for name in todo if not (self.root / f"samples/{name}/pooled/eval/generation.json").is_file()]
        self.run([[sys.executable, "scripts/evaluate_generation.py", "--generated", str(self.root / f"samples/{name}/pooled"),
                   "--reference", f"fashion-mnist:test:0:{n}", "--floor-reference", f"fashion-mnist:train:{60000 - n}:60000",
                   "--classifier", str(self.root / "classifier"), "--inception", "off", "--cache-dir",
                   str(self.root / "cache"), "--output-dir", str(self.root / f"samples/{name}/pooled/eval")]
                  for name in missing], [self.root / f"logs/eval_{name}_pooled.log" for name in missing])
        for name in todo:
            pooled[name] = json.loads((self.root / f"samples/{name}/pooled/eval/generation.json").read_text())
        self.save()
        return bool(todo)

    def inception(self) -> bool:
        """Inception FID of seed 0's samples on ``--inception-num`` images per set (slow on a CPU)."""
        incep = self.results.setdefault("inception", {})
        todo = [name for name in self.seeds if name not in incep] if self.args.part == "main" and self.args.inception_num else []
        n, m = self.args.num_samples, self.args.inception_num
        outs = {name: self.root / f"samples/{name}/final_seed0/eval_inception" for name in todo}
        self.run([[sys.executable, "scripts/evaluate_generation.py", "--generated", str(out.parent), "--num", str(n),
                   "--reference", f"fashion-mnist:test:0:{n}", "--floor-reference", f"fashion-mnist:train:55000:{55000 + n}",
                   "--classifier", str(self.root / "classifier"), "--inception", "auto", "--inception-num", str(m),
                   "--cache-dir", str(self.root / "cache"), "--output-dir", str(out)]
                  for out in outs.values() if not (out / "generation.json").is_file()],
                 [self.root / f"logs/inception_{name}.log" for name, out in outs.items() if not (out / "generation.json").is_file()])
        for name, out in outs.items():
            r = json.loads((out / "generation.json").read_text())
            if not isinstance(r.get("inception"), dict):
                raise SystemExit(f"bench_maskgit: {r['inception']}")
            incep[name] = r["inception"]
        self.save()
        return bool(todo)


STAGES = ("data", "classifier", "tokenizers", "tokenizer_eval", "tokenize", "maskgit", "tune", "final", "pooled",
          "inception")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["main", "study"], required=True)
    p.add_argument("--root", default="runs/bench_maskgit", help="where every output goes (resumable)")
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (each OMP_NUM_THREADS=1)")
    p.add_argument("--tokenizer-steps", type=int, default=1000)
    p.add_argument("--study-steps", type=int, default=200)
    p.add_argument("--dead-code-factor", type=float, default=0.1,
                   help="VQ re-seeds a code whose EMA usage falls below this fraction of uniform use (0 = never)")
    p.add_argument("--num-recon", type=int, default=2000, help="test images for tokenizer metrics and usage")
    p.add_argument("--num-train-tokens", type=int, default=20000, help="train images tokenized for MaskGIT")
    p.add_argument("--maskgit-steps", type=int, default=1000)
    p.add_argument("--study-maskgit-steps", type=int, default=400)
    p.add_argument("--study-maskgit-max", type=int, default=12, help="MaskGIT for study sizes up to 2^this codes")
    p.add_argument("--maskgit-width", type=int, default=64)
    p.add_argument("--maskgit-depth", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3, help="MaskGIT training seeds of the main part (each sampled with its seed)")
    p.add_argument("--num-tune", type=int, default=200, help="samples per tuning setting (scored against val)")
    p.add_argument("--num-samples", type=int, default=2000, help="final samples per seed (scored against test)")
    p.add_argument("--num-study-samples", type=int, default=1000)
    p.add_argument("--inception-num", type=int, default=500,
                   help="images per set for Inception FID of seed 0 (0 = skip; ~0.4 s per image on one core)")
    p.add_argument("--until", default="inception", choices=STAGES)
    args = p.parse_args(argv)
    if min(args.jobs, args.tokenizer_steps, args.study_steps, args.num_recon, args.num_samples, args.seeds,
           args.maskgit_steps, args.study_maskgit_steps, args.num_study_samples) < 1:
        p.error("counts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.root.mkdir(parents=True, exist_ok=True)
    bench.results["settings"] = {k: v for k, v in vars(args).items() if k not in ("root", "until", "jobs")}
    bench.results["paper"] = PAPER
    for name in STAGES:
        bench.stage(name, getattr(bench, name))
        if name == args.until:
            break
    bench.save()
    print(f"results: {bench.results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
