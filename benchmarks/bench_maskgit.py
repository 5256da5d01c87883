"""MaskGIT on FSQ against VQ tokens, on Fashion-MNIST, and the codebook-size study (issue 11's reproduction).

    python benchmarks/bench_maskgit.py [--root runs/bench_maskgit] [--jobs 2] [--num-samples 1000]

One resumable command: every stage skips what its outputs already hold, so re-running continues.

1. data: Fashion-MNIST's raw files (:mod:`fsqtok.data.fashion_mnist`) exported to class folders:
   train = training images 0..54999, val = 55000..59999 (tuning and the real-vs-real floor), test.
2. classifier: ``scripts/train_classifier.py`` (features for the Frechet classifier distance).
3. tokenizers (``recipes/train_tokenizer.py``, folder source, 28x28 -> f=4 -> 7x7 = 49 tokens):
   main FSQ [8,5,5,5] and VQ with the same 1000 codes (EMA codebook), same network, data and steps;
   the study's FSQ/VQ pairs at 2^8..2^16 codes, shorter.
4. tokenizer evaluation on the first ``--num-recon`` test images: PSNR, SSIM, the classifier distance of
   reconstructions, and codebook usage / entropy of the test tokens.
5. ``fsqtok tokenize`` of ``--num-train-tokens`` train images and the test images, per main tokenizer.
6. MaskGIT (``recipes/train_maskgit.py``) on each.
7. sampling settings tuned on val, the same grid for both; 8. final samples scored against test with
   ``scripts/evaluate_generation.py`` for several sampling seeds (classifier features, with a bootstrap
   interval and the real-vs-real floor); 9. Inception FID of the first seed on fewer images.

Writes ``ROOT/results.json`` (every figure, each stage's wall time) and, with ``--figure``, the
codebook-study plot. Runs with ``OMP_NUM_THREADS=1`` per process, ``--jobs`` processes at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import evaluate_generation as evg  # noqa: E402
from train_classifier import load_classifier  # noqa: E402

MAIN_LEVELS = [8, 5, 5, 5]
STUDY_LEVELS = {8: [8, 6, 5], 10: [8, 5, 5, 5], 12: [7, 5, 5, 5, 5], 14: [8, 8, 8, 6, 5], 16: [8, 8, 8, 5, 5, 5]}
PAPER = {"FSQ [8,5,5,5]": {"fid": 4.53, "usage": 1.00}, "VQ 1024": {"fid": 4.51, "usage": 0.81},
         "scale": "ImageNet at 256x256 (1.28M training images), 16x16 = 256 tokens per image, a full-size "
                  "MaskGIT transformer and tokenizers trained on accelerators, Inception FID"}
TOKENIZER_NET = {"base_channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "mid_attention": True}
GRID = [{"temperature": 1.0, "noise": 4.5, "guidance": 0.0}, {"temperature": 1.0, "noise": 1.0, "guidance": 0.0},
        {"temperature": 1.0, "noise": 4.5, "guidance": 1.0}, {"temperature": 1.0, "noise": 1.0, "guidance": 1.0}]


def tokenizer_config(root: Path, out: Path, quantizer: str, levels: list[int], steps: int) -> dict[str, Any]:
    return {"modality": "image", "output_dir": str(out), "max_steps": steps, "seed": 0,
            "tokenizer": {"quantizer": quantizer, "levels": levels, **TOKENIZER_NET},
            "data": {"source": "folder", "path": str(root / "data/train"), "val_path": str(root / "data/val1k"),
                     "size": 28, "batch_size": 32},
            "optim": {"lr": 2e-3, "warmup_steps": max(10, steps // 15), "min_lr_ratio": 0.05, "ema_decay": 0.99},
            "log": {"every": 25, "media_every": 0, "eval_every": 0, "tensorboard": False, "progress_bar": False},
            "checkpoint": {"every": 100, "keep_last": 1}}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.root = args, Path(args.root).resolve()
        self.results_path = self.root / args.results
        self.results: dict[str, Any] = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {}
        self.env = {**os.environ, "OMP_NUM_THREADS": "1",
                    "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}

    def save(self) -> None:
        self.results_path.write_text(json.dumps(self.results, indent=2) + "\n")

    def run(self, cmds: list[list[str]], logs: list[Path]) -> None:
        """Run commands, ``--jobs`` at a time, each logging to its file; any failure stops the bench."""
        pending, running = list(zip(cmds, logs)), []
        while pending or running:
            while pending and len(running) < self.args.jobs:
                cmd, log = pending.pop(0)
                log.parent.mkdir(parents=True, exist_ok=True)
                running.append((subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=open(log, "a"),
                                                 stderr=subprocess.STDOUT), log))
            time.sleep(2)
            for proc, log in list(running):
                if proc.poll() is not None:
                    running.remove((proc, log))
                    if proc.returncode != 0:
                        raise SystemExit(f"bench_maskgit: {' '.join(proc.args[:3])} failed (exit {proc.returncode}); see {log}")

    def stage(self, name: str, fn) -> None:
        """Run one stage; its wall time is recorded only when it computed something (not when it collected)."""
        t0 = time.perf_counter()
        did = fn()
        if did:
            self.results.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 1)
            self.save()
        print(f"stage {name}: {'done in %.0f s' % (time.perf_counter() - t0) if did else 'outputs present, skipped'}",
              flush=True)

    # ------------------------------------------------------------------ stages
    def data(self) -> bool:
        from fsqtok.data.fashion_mnist import export_image_folder

        parts = {"train": ("train", slice(0, 55000)), "val1k": ("train", slice(55000, 56000)),
                 "train_tokens": ("train", slice(0, self.args.num_train_tokens)), "test": ("test", None)}
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

    def tokenizer_runs(self) -> dict[str, tuple[Path, str, list[int], int]]:
        """name -> (output dir, quantizer, levels, steps)."""
        runs = {f"main_{q}": (self.root / f"tok/main_{q}", q, MAIN_LEVELS, self.args.tokenizer_steps) for q in ("fsq", "vq")}
        if self.args.study:
            for lv in STUDY_LEVELS.values():
                for q in ("fsq", "vq"):
                    name = f"{q}_{'-'.join(map(str, lv))}"
                    runs[name] = (self.root / f"tok/study/{name}", q, lv, self.args.study_steps)
        return runs

    def tokenizers(self) -> bool:
        cmds, logs = [], []
        for name, (out, q, lv, steps) in self.tokenizer_runs().items():
            if (out / "tokenizer/config.json").is_file():
                continue
            cfg = self.root / f"cfg/{name}.yaml"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(yaml.safe_dump(tokenizer_config(self.root, out, q, lv, steps), sort_keys=False))
            cmds.append([sys.executable, "recipes/train_tokenizer.py", "--config", str(cfg), "--resume"])
            logs.append(self.root / f"logs/{name}.log")
        self.run(cmds, logs)
        return bool(cmds)

    def tokenizer_eval(self) -> bool:
        import fsqtok
        from fsqtok.data.fashion_mnist import load_fashion_mnist, to_tensor
        from fsqtok.metrics import psnr, ssim

        done = self.results.setdefault("tokenizers", {})
        todo = [n for n in self.tokenizer_runs() if n not in done]
        if not todo:
            return False
        computed = False
        images, _ = load_fashion_mnist("test")
        x = to_tensor(images[: self.args.num_recon])
        clf = evg.classifier_features(load_classifier(self.root / "classifier")[0])
        f_real = evg.features(clf, x)
        for name in todo:
            out, q, lv, steps = self.tokenizer_runs()[name]
            if (out / "eval.json").is_file():  # evaluated by an earlier or a concurrent bench run
                done[name] = json.loads((out / "eval.json").read_text())
                continue
            tok = fsqtok.load_tokenizer(str(out / "tokenizer")).eval()
            t0 = time.perf_counter()
            with torch.inference_mode():
                idx = torch.cat([tok.encode(x[i:i + 250]) for i in range(0, len(x), 250)])
                y = torch.cat([tok.decode(idx[i:i + 250], input_shape=(len(idx[i:i + 250]), 3, 28, 28))
                               for i in range(0, len(x), 250)]).clamp(-1, 1)
            p, s = psnr(x, y), ssim(x, y)
            ci = lambda v: 1.96 * float(v.std()) / math.sqrt(len(v))  # noqa: E731
            done[name] = {"quantizer": q, "levels": lv, "codebook_size": tok.codebook_size, "train_steps": steps,
                          "images": len(x), "psnr": float(p.mean()), "psnr_ci95": ci(p), "ssim": float(s.mean()),
                          "ssim_ci95": ci(s), "fcd_reconstruction": evg.frechet_distance(f_real, evg.features(clf, y)),
                          **evg.token_usage(idx, tok.codebook_size), "eval_seconds": round(time.perf_counter() - t0, 1)}
            (out / "eval.json").write_text(json.dumps(done[name], indent=2) + "\n")
            self.save()
            computed = True
        return computed

    def tokenize(self) -> bool:
        cmds, logs = [], []
        for q in ("fsq", "vq"):
            for split, folder in (("train", "train_tokens"), ("test", "test")):
                out = self.root / f"shards/{q}/{split}"
                if (out / "manifest.json").is_file():
                    continue
                cmds.append([sys.executable, "-m", "fsqtok.cli", "tokenize", "--tokenizer", str(self.root / f"tok/main_{q}/tokenizer"),
                             "--data", str(self.root / "data" / folder), "--output", str(out), "--labels", "folder",
                             "--size", "28", "--num-workers", "0", "--batch-size", "100"])
                logs.append(self.root / f"logs/tokenize_{q}_{split}.log")
        self.run(cmds, logs)
        return bool(cmds)

    def maskgit(self) -> bool:
        cmds, logs = [], []
        a = self.args
        for q in ("fsq", "vq"):
            out = self.root / f"maskgit/{q}"
            if (out / "maskgit/config.json").is_file():
                continue
            cmds.append([sys.executable, "recipes/train_maskgit.py", "--config", "recipes/configs/maskgit/fashion_mnist.yaml",
                         "--resume", f"output_dir={out}", f"data.train={self.root / f'shards/{q}/train'}",
                         f"data.val={self.root / f'shards/{q}/test'}", f"max_steps={a.maskgit_steps}",
                         f"model.width={a.maskgit_width}", f"model.depth={a.maskgit_depth}", "model.heads=4",
                         "data.batch_size=64", f"optim.warmup_steps={max(10, a.maskgit_steps // 10)}", "optim.lr=1e-3",
                         "optim.ema_decay=0.99", f"sample.every={a.maskgit_steps}", "log.every=25",
                         f"log.eval_every={a.maskgit_steps}", "log.progress_bar=false", "checkpoint.every=100",
                         "checkpoint.keep_last=1"])
            logs.append(self.root / f"logs/maskgit_{q}.log")
        self.run(cmds, logs)
        return bool(cmds)

    def sample_and_score(self, q: str, name: str, setting: dict[str, float], n: int, seed: int,
                         reference: str, floor: str | None, bootstrap: int) -> dict[str, Any]:
        out = self.root / f"samples/{q}/{name}"
        if not (out / "samples.json").is_file():
            self.run([[sys.executable, "scripts/sample_maskgit.py", "--model", str(self.root / f"maskgit/{q}/maskgit"),
                       "--num-samples", str(n), "--steps", "12", "--seed", str(seed), "--output-dir", str(out),
                       "--tokens-out", str(out / "tokens"), *[f"--{k}={v}" for k, v in setting.items()]]],
                     [self.root / f"logs/sample_{q}_{name}.log"])
        if not (out / "eval/generation.json").is_file():
            size = json.loads((self.root / f"shards/{q}/train/manifest.json").read_text())["tokenizer"]["codebook_size"]
            cmd = [sys.executable, "scripts/evaluate_generation.py", "--generated", str(out), "--reference", reference,
                   "--classifier", str(self.root / "classifier"), "--tokens", str(out / "tokens"), "--codebook-size",
                   str(size), "--inception", "off", "--bootstrap", str(bootstrap), "--cache-dir", str(self.root / "cache"),
                   "--output-dir", str(out / "eval")]
            self.run([cmd + (["--floor-reference", floor] if floor else [])], [self.root / f"logs/eval_{q}_{name}.log"])
        return json.loads((out / "eval/generation.json").read_text())

    def tune(self) -> bool:
        tuned = self.results.setdefault("tuning", {})
        if all(q in tuned for q in ("fsq", "vq")):
            return False
        for q in ("fsq", "vq"):
            scores = []
            for i, setting in enumerate(GRID):
                r = self.sample_and_score(q, f"tune{i}", setting, self.args.num_tune, 100 + i,
                                          f"fashion-mnist:train:56000:{56000 + self.args.num_tune}", None, 0)
                scores.append({**setting, "fcd": r["classifier"]["frechet_distance"], "class_accuracy": r["class_accuracy"]})
            tuned[q] = {"grid": scores, "best": min(scores, key=lambda s: s["fcd"])}
            self.save()
        return True

    def final(self) -> bool:
        final = self.results.setdefault("generation", {})
        n = self.args.num_samples
        todo = [(q, s) for q in ("fsq", "vq") for s in range(self.args.seeds) if f"{q}/seed{s}" not in final]
        for q, seed in todo:
            best = {k: self.results["tuning"][q]["best"][k] for k in ("temperature", "noise", "guidance")}
            final[f"{q}/seed{seed}"] = self.sample_and_score(q, f"final_seed{seed}", best, n, seed, f"fashion-mnist:test:0:{n}",
                                                             f"fashion-mnist:train:55000:{55000 + n}", 50)
            self.save()
        return bool(todo)


    def inception(self) -> bool:
        """Inception FID of the first seed's samples on ``--inception-num`` images per set (slow on a CPU)."""
        incep = self.results.setdefault("inception", {})
        todo = [q for q in ("fsq", "vq") if q not in incep] if self.args.inception_num else []
        ran = False
        for q in todo:
            out, n, m = self.root / f"samples/{q}/final_seed0", self.args.num_samples, self.args.inception_num
            if not (out / "eval_inception/generation.json").is_file():
                self.run([[sys.executable, "scripts/evaluate_generation.py", "--generated", str(out), "--num", str(n),
                           "--reference", f"fashion-mnist:test:0:{n}", "--floor-reference",
                           f"fashion-mnist:train:55000:{55000 + n}", "--classifier", str(self.root / "classifier"),
                           "--inception", "auto", "--inception-num", str(m), "--cache-dir", str(self.root / "cache"),
                           "--output-dir", str(out / "eval_inception")]], [self.root / f"logs/inception_{q}.log"])
                ran = True
            r = json.loads((out / "eval_inception/generation.json").read_text())
            if not isinstance(r.get("inception"), dict):
                raise SystemExit(f"bench_maskgit: {r['inception']}")
            incep[q] = r["inception"]
            self.save()
        return ran


def figure(results: dict[str, Any], path: Path) -> None:
    """Codebook usage, reconstruction PSNR and index entropy of the study's tokenizers against codebook size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results["settings"]["study_steps"]
    toks = {k: r for k, r in results["tokenizers"].items() if r["train_steps"] == steps and not k.startswith("main_")}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for q, style in (("fsq", "o-"), ("vq", "s--")):
        rows = sorted((r for r in toks.values() if r["quantizer"] == q), key=lambda r: r["codebook_size"])
        k = [math.log2(r["codebook_size"]) for r in rows]
        axes[0].plot(k, [r["usage"] for r in rows], style, label=q.upper())
        axes[1].plot(k, [r["psnr"] for r in rows], style, label=q.upper())
        axes[2].plot(k, [r["entropy_bits"] for r in rows], style, label=q.upper())
    rows = sorted((r for r in toks.values() if r["quantizer"] == "fsq"), key=lambda r: r["codebook_size"])
    k = [math.log2(r["codebook_size"]) for r in rows]
    axes[0].plot(k, [r["uniform_usage_bound"] for r in rows], ":", color="grey", label="uniform-use bound")
    axes[2].plot(k, k, ":", color="grey", label="log2(codebook size)")
    n = rows[0]["tokens_counted"]
    for ax, title in zip(axes, (f"codebook usage ({n:,} test tokens)", "reconstruction PSNR (dB)", "index entropy (bits/token)")):
        ax.set_title(title)
        ax.set_xlabel("log2(codebook size)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Fashion-MNIST tokenizers (28x28 -> 7x7 tokens, {steps} training steps each): FSQ vs VQ "
                 "at the FSQ paper's codebook sizes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="runs/bench_maskgit", help="where every output goes (resumable)")
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (each OMP_NUM_THREADS=1)")
    p.add_argument("--tokenizer-steps", type=int, default=300)
    p.add_argument("--study-steps", type=int, default=100)
    p.add_argument("--no-study", dest="study", action="store_false", help="skip the codebook-size study")
    p.add_argument("--num-recon", type=int, default=2000, help="test images for tokenizer metrics and usage")
    p.add_argument("--num-train-tokens", type=int, default=10000, help="train images tokenized for MaskGIT")
    p.add_argument("--maskgit-steps", type=int, default=400)
    p.add_argument("--maskgit-width", type=int, default=64)
    p.add_argument("--maskgit-depth", type=int, default=3)
    p.add_argument("--num-tune", type=int, default=200, help="samples per tuning setting (scored against val)")
    p.add_argument("--num-samples", type=int, default=1000, help="final samples per seed (scored against test)")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds of the final samples")
    p.add_argument("--inception-num", type=int, default=200,
                   help="images per set for Inception FID of the first seed (0 = skip; ~1-7 s per image on a CPU)")
    p.add_argument("--results", default="results.json", help="the results file under --root")
    p.add_argument("--figure", default=None, help="write the codebook-study figure here (PNG)")
    p.add_argument("--until", default="inception", choices=["data", "classifier", "tokenizers", "tokenizer_eval",
                                                          "tokenize", "maskgit", "tune", "final", "inception"])
    args = p.parse_args(argv)
    if min(args.jobs, args.tokenizer_steps, args.study_steps, args.num_recon, args.num_samples, args.seeds) < 1:
        p.error("counts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.root.mkdir(parents=True, exist_ok=True)
    bench.results["settings"] = {k: v for k, v in vars(args).items() if k not in ("root", "until", "jobs", "results", "figure")}
    bench.results["paper"] = PAPER
    for name in ("data", "classifier", "tokenizers", "tokenizer_eval", "tokenize", "maskgit", "tune", "final", "inception"):
        bench.stage(name, getattr(bench, name))
        if name == args.until:
            break
    bench.save()
    if args.figure:
        figure(bench.results, Path(args.figure))
    print(f"results: {bench.results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
