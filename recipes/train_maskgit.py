"""Train a class-conditional MaskGIT on token shards (``fsqtok tokenize`` output with labels) with Accelerate.

    accelerate launch recipes/train_maskgit.py --config recipes/configs/maskgit/fashion_mnist.yaml [key=value ...]
    accelerate launch recipes/train_maskgit.py --config ... --resume          # latest checkpoint of output_dir
    python recipes/train_maskgit.py --config recipes/configs/maskgit/fashion_mnist_debug.yaml max_steps=2

One readable script; the loop body is here, its skeleton and everything else come from ``fsqtok.training``. The
shards fix the model's vocabulary and grid: ``codebook_size`` and the tokenizer (absolute path and
weights sha256) come from their manifest, the ``(h, w)`` grid from their rows, and the classes from
their labels (sorted, numbers in names compared as numbers). Residual (multi-stage) tokens are refused.
``data.val`` must have the same grid, codebook and tokenizer, and hold rows that are not all in
``data.train`` (its loss is logged as ``eval``); both are checked before step 1. What the data IS
(:func:`fsqtok.shards.manifest.content_identity` plus the grid) is written to ``config.yaml`` under
``trained_on`` and, as content hashes, to the model's ``config.json`` (``trained_on``); a resume on
other training content is refused, whatever its path. With ``data.debug_images > 0`` the run makes
its own tiny shards first (a random-init image tokenizer, built-in sample images in
``data.debug_classes`` folders, and a quarter as many held-out images as ``data.val`` unless one is
given) under ``output_dir/debug_data``, remade when those settings change or on ``--overwrite``.

What one run writes under ``output_dir``: ``config.yaml``; ``checkpoints/step-N/`` (accelerate
state, EMA, step, and a loadable ``maskgit/`` folder); ``maskgit/`` (the final model, EMA weights, with
the tokenizer that made its tokens in ``maskgit/tokenizer/``);
``metrics.jsonl``, ``train.log``; ``logs/`` (TensorBoard: scalars and labelled grids of decoded
samples). Exit status: 0 done, 1 error, 2 bad arguments, 130 stopped by Ctrl-C after saving.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fsqtok.cli_support import exit_process
from fsqtok.data import DataError, EpochSampler
from fsqtok.generative import MaskGIT, MaskGITConfig
from fsqtok.generative.maskgit.sampling import (TokenizerMismatch, class_name, decode_images, labelled_grid,
                                                load_matching_tokenizer)
from fsqtok.hub import ConfigError
from fsqtok.shards import ShardDataset
from fsqtok.shards.manifest import content_identity, token_space_differences
from fsqtok.training import (EMA, EXIT_STOPPED, Checkpointer, ConfigChecks, NonFiniteLoss, RecipeConfigError, StepFlags,
                             StopRequest, TrainLogger, TrainState, build_accelerator, build_scheduler, load_config,
                             count_step, every_or_final, optimizer_step, prepare_output_dir, resumed_batches,
                             run_recipe)
from fsqtok.training.checkpoint import check_resume_config

MODEL_FIELDS = ("width", "depth", "heads", "mlp_ratio", "dropout", "label_smoothing", "class_dropout")
DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/maskgit",
    "max_steps": 20000,  # optimizer steps
    "seed": 0,
    "mixed_precision": "no",  # no | bf16 | fp16
    "data": {
        "train": None,  # token shards folder (fsqtok tokenize --labels ...); required unless debug_images > 0
        "val": None,  # held-out shards of the same tokenizer and grid: masked-token loss at eval_every
        "tokenizer": None,  # the tokenizer (default: the one the manifest names; hash checked), saved with the model
        "batch_size": 64,  # per process
        "num_workers": 0,
        "debug_images": 0,  # > 0: make that many tiny tokenized built-in images (no data needed)
        "debug_classes": 2,
    },
    "model": {k: getattr(MaskGITConfig(), k) for k in MODEL_FIELDS},  # fsqtok.generative.MaskGITConfig fields
    "optim": {"lr": 4e-4, "betas": [0.9, 0.96], "weight_decay": 0.045, "schedule": "cosine", "warmup_steps": 1000,
              "min_lr_ratio": 0.0, "grad_clip": 1.0, "gradient_accumulation_steps": 1, "ema_decay": 0.999},
    "sample": {  # TensorBoard grids of decoded samples (EMA weights, fixed seed)
        "every": 1000,  # steps between grids (0 = only at the end)
        "per_class": 8, "max_classes": 10, "steps": 12, "temperature": 1.0, "noise": 4.5, "guidance": 0.0,
    },
    "log": {"every": 50, "eval_every": 1000, "tensorboard": True, "progress_bar": True},
    "checkpoint": {"every": 1000, "keep_last": 2},
    "trained_on": {"train_data": None, "val_data": None},  # written by the run: what data.train / data.val ARE
    "push_to_hub": False,
    "hub_model_id": None,
    "hub_private": False,
}
FIXED_KEYS = ("model", "seed")  # a resumed run may not change what shapes the weights or the data order
DATA_KEYS = ("trained_on.train_data",)  # nor the training data: compared by content once the shards are open


def check_config(cfg) -> None:
    c = ConfigChecks(cfg)
    c.positive("max_steps", "data.batch_size", "optim.lr", "optim.gradient_accumulation_steps",
               "log.every", "checkpoint.every", "sample.per_class", "sample.max_classes", "sample.steps",
               "data.debug_classes")
    c.non_negative("optim.warmup_steps", "data.num_workers", "data.debug_images", "optim.weight_decay", "optim.grad_clip", "log.eval_every",
                   "sample.every", "sample.temperature", "sample.noise", "sample.guidance", "checkpoint.keep_last")
    c.in_range("optim.ema_decay", 0.0, 1.0, high_open=True)
    c.in_range("optim.min_lr_ratio", 0.0, 1.0)
    c.choice("optim.schedule", ("cosine", "linear", "constant"))
    c.choice("mixed_precision", ("no", "bf16", "fp16"))
    if cfg.data.train is None and cfg.data.debug_images == 0:
        c.error("data.train: required (a token shards folder), or set data.debug_images > 0 for built-in debug data")
    if cfg.push_to_hub and not cfg.hub_model_id:
        c.error("push_to_hub=true needs hub_model_id=user/name")
    c.done()


# --------------------------------------------------------------------------- data


def natural_key(label: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]


class TokenLabels(Dataset):
    """Shard rows as ``(tokens int64 (h, w), class id int64)``; the tokens stay in their small dtype in memory."""

    def __init__(self, shards: ShardDataset, class_names: list[str], where: str) -> None:
        if any(lb is None for lb in shards.labels):
            raise DataError(f"{where}: rows without a label; tokenize with labels (fsqtok tokenize --labels ...)")
        unknown = sorted(set(shards.labels) - set(class_names))
        if unknown:
            raise DataError(f"{where}: labels not in the training classes: {', '.join(unknown[:5])}")
        ids = {name: i for i, name in enumerate(class_names)}
        self.tokens = shards.array()
        self.labels = torch.tensor([ids[lb] for lb in shards.labels])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(self.tokens[i].astype(np.int64)), self.labels[i]


def open_shards(path: str, where: str) -> ShardDataset:
    try:
        shards = ShardDataset(path)
        grid = shards.array().shape[1:]
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"{where}={path}: {e}") from None
    tok = shards.manifest["tokenizer"]
    if tok.get("num_stages", 1) != 1:
        raise DataError(f"{where}={path}: residual tokens ({tok['num_stages']} stages) are not supported by MaskGIT yet; "
                        "tokenize with a plain FSQ or VQ tokenizer")
    if len(grid) != 2:
        raise DataError(f"{where}={path}: token rows of shape {tuple(grid)}; MaskGIT takes image token grids (h, w)")
    return shards


def shards_identity(shards: ShardDataset) -> dict[str, Any]:
    """What a shards folder IS for MaskGIT: :func:`content_identity` plus the token grid ``[h, w]``."""
    return {**content_identity(shards.manifest), "grid": list(shards.array().shape[1:])}


def check_heldout(train: ShardDataset, val: ShardDataset, path: str) -> int:
    """Refuse ``data.val`` shards of another token space than ``data.train``, or whose rows (tokens and
    label) are all training rows; return how many of its rows are also training rows."""
    diffs = token_space_differences(shards_identity(train), shards_identity(val))
    if diffs:
        raise DataError(f"data.val={path}: other tokens than data.train ({'; '.join(diffs)}); tokenize the held-out "
                        "images with the training shards' tokenizer at the same image size")
    seen = {(lb, row.tobytes()) for lb, row in zip(train.labels, train.array())}
    shared = sum((lb, row.tobytes()) in seen for lb, row in zip(val.labels, val.array()))
    if shared == len(val):
        raise DataError(f"data.val={path}: holds the same rows as data.train (all {shared}), so its loss would be a "
                        "training loss; give held-out shards (e.g. the test split) or leave data.val unset")
    return shared


def make_debug_shards(out: Path, n: int, classes: int, seed: int, overwrite: bool) -> tuple[str, str]:
    """A random-init tiny image tokenizer, ``n`` built-in 16x16 images in ``classes`` class folders and
    ``n // 4`` (at least one) held-out ones, tokenized: ``(train shards, val shards)``. ``out`` is remade
    on ``overwrite`` or when ``n``, ``classes`` or ``seed`` differ from those that made it."""
    from accelerate import PartialState

    from fsqtok.datasets.samples import sample_images
    from fsqtok.media.image import write_image
    from fsqtok.shards import TokenizeJob, tokenize
    from fsqtok.tokenizers import ImageConfig, ImageTokenizer

    state, settings = PartialState(), {"images": n, "classes": classes, "seed": seed}
    record = out / "debug.json"
    if state.is_main_process and (overwrite or not record.is_file() or json.loads(record.read_text()) != settings):
        shutil.rmtree(out, ignore_errors=True)
        torch.manual_seed(seed)
        tok = ImageTokenizer(ImageConfig(levels=(8, 5, 5, 5), base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                                         mid_attention=False))
        tok.save_pretrained(out / "tokenizer")
        for i, img in enumerate(sample_images(n + max(1, n // 4), size=16, seed=seed)):
            split = "images" if i < n else "val_images"
            (out / split / f"class{i % classes}").mkdir(parents=True, exist_ok=True)
            write_image(out / split / f"class{i % classes}" / f"{i:04d}.png", img)
        record.write_text(json.dumps(settings) + "\n")
    state.wait_for_everyone()
    for images, shards in (("images", "shards"), ("val_images", "val")):
        tokenize(TokenizeJob(tokenizer=str(out / "tokenizer"), data=str(out / images), output=out / shards,
                             labels="folder", num_workers=0))
    return str(out / "shards"), str(out / "val")


# --------------------------------------------------------------------------- model


class LossModule(nn.Module):
    """``forward(tokens, labels) -> MaskGIT.loss``, so the distributed wrapper sees the loss as a forward call."""

    def __init__(self, model: MaskGIT) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, labels: Tensor) -> Tensor:
        return self.model.loss(tokens, labels)


def tokenizer_location(source: str) -> str:
    """A local tokenizer folder as an absolute path (it must load from any directory); a Hub repo id as is."""
    return str(Path(source).resolve()) if Path(source).is_dir() else source


def build_model_config(cfg, shards: ShardDataset, class_names: list[str]) -> MaskGITConfig:
    tok = shards.manifest["tokenizer"]
    try:
        return MaskGITConfig(codebook_size=int(tok["codebook_size"]), grid=tuple(shards.array().shape[1:]),
                             num_classes=len(class_names), class_names=tuple(class_names),
                             tokenizer=tokenizer_location(cfg.data.tokenizer or tok["source"]),
                             tokenizer_sha256=tok["weights_sha256"], **cfg.model)
    except (ConfigError, TypeError) as e:
        raise RecipeConfigError(f"model: {e}") from None


def open_data(cfg, run_dir: Path, resume_from: Path | None, overwrite: bool) -> tuple[dict[str, ShardDataset], dict[str, str], int]:
    """Open ``data.train`` (and ``data.val``), check them against each other and, on a resume, the
    training content against the checkpoint's; record both in ``cfg.trained_on``. Returns the shards and
    their paths by config key, and how many val rows are also training rows."""
    paths = {"data.train": cfg.data.train, "data.val": cfg.data.val}
    if cfg.data.train is None:
        train, val = make_debug_shards(run_dir / "debug_data", cfg.data.debug_images, cfg.data.debug_classes,
                                       cfg.seed, overwrite)
        paths = {"data.train": train, "data.val": cfg.data.val or val}
    shards = {key: open_shards(path, key) for key, path in paths.items() if path}
    shared = check_heldout(shards["data.train"], shards["data.val"], paths["data.val"]) if "data.val" in shards else 0
    cfg.trained_on.update({name: shards_identity(s) for name, s in (("train_data", shards["data.train"]),
                                                                     ("val_data", shards.get("data.val"))) if s})
    if resume_from is not None:
        check_resume_config(resume_from, cfg.to_dict(), DATA_KEYS, what="training data")
    return shards, paths, shared


@torch.no_grad()
def val_loss(accelerator, model: MaskGIT, loader: DataLoader) -> float:
    """Masked-token loss on held-out shards, with masks drawn from a fixed seed (comparable across steps)."""
    g = torch.Generator(accelerator.device).manual_seed(1234 + accelerator.process_index)
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for tokens, labels in loader:
        total += torch.stack([model.loss(tokens, labels, generator=g).double() * len(labels),
                              torch.tensor(float(len(labels)), dtype=torch.float64, device=accelerator.device)])
    total = accelerator.reduce(total, "sum")
    return float(total[0] / total[1].clamp(min=1))


@torch.no_grad()
def sample_grid(model: MaskGIT, tok, sc, device) -> Tensor:
    """A labelled grid (3, H, W) in [0, 1] of ``sc.per_class`` samples for each of the first ``sc.max_classes`` classes."""
    cfg = model.config
    classes = list(range(min(cfg.num_classes, sc.max_classes)))
    labels = torch.tensor(classes, device=device).repeat_interleave(sc.per_class)
    model.eval()
    tokens = model.generate(labels, steps=sc.steps, temperature=sc.temperature, noise=sc.noise, guidance=sc.guidance,
                            generator=torch.Generator(device).manual_seed(0))
    return labelled_grid(decode_images(tok, tokens), labels.tolist(), [class_name(cfg, c) for c in range(cfg.num_classes)],
                         per_row=sc.per_class)


# --------------------------------------------------------------------------- main


def train(cfg, resume: str | None = None, overwrite: bool = False) -> int:
    """One run of ``cfg`` (a loaded config); returns the exit status.

    Long on purpose (about 80 lines): a recipe keeps its loop in view in one function (docs/DESIGN.md, data flow 2).
    """
    check_config(cfg)
    run_dir, oc = Path(cfg.output_dir), cfg.optim
    resume_from = prepare_output_dir(run_dir, cfg.to_dict(), resume=resume, overwrite=overwrite, fixed_keys=FIXED_KEYS)
    accelerator = build_accelerator(run_dir, mixed_precision=cfg.mixed_precision, tensorboard=cfg.log.tensorboard,
                                    gradient_accumulation_steps=oc.gradient_accumulation_steps)
    shards, paths, shared = open_data(cfg, run_dir, resume_from, overwrite)
    train_path = paths["data.train"]
    class_names = sorted({lb for lb in shards["data.train"].labels if lb is not None}, key=natural_key)
    train_set = TokenLabels(shards["data.train"], class_names, f"data.train={train_path}")
    mcfg = build_model_config(cfg, shards["data.train"], class_names)
    val_set = TokenLabels(shards["data.val"], class_names, f"data.val={paths['data.val']}") if "data.val" in shards else None
    if len(train_set) < cfg.data.batch_size * accelerator.num_processes:
        raise DataError(f"{len(train_set)} training rows are too few for data.batch_size={cfg.data.batch_size} "
                        f"on {accelerator.num_processes} process(es)")
    tok = None
    if accelerator.is_main_process:  # checked now, not at the first grid; saved with every model folder
        try:
            tok = load_matching_tokenizer(mcfg).to(accelerator.device)
        except (TokenizerMismatch, FileNotFoundError) as e:
            raise DataError(f"data.tokenizer: {e}".replace("--tokenizer", "data.tokenizer=")) from None

    set_seed(cfg.seed)  # the same initial weights on every process
    model = MaskGIT(mcfg)
    model.trained_on = {k: v["content_sha256"] for k, v in cfg.trained_on.items() if v}  # named in config.json
    optimizer = torch.optim.AdamW(model.parameters(), lr=oc.lr, betas=tuple(oc.betas), weight_decay=oc.weight_decay)
    scheduler = build_scheduler(optimizer, oc, cfg.max_steps)
    loader_kw = dict(batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers)
    # the loader's own generator: starting an epoch (or a resumed one) must not draw from the global RNG,
    # which the masks, class dropout and dropout use and the checkpoints restore
    train_dl = DataLoader(train_set, sampler=EpochSampler(len(train_set), cfg.seed), drop_last=True,
                          generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)
    val_dl = DataLoader(val_set, shuffle=False, **loader_kw) if val_set is not None else None
    step_fn, optimizer, scheduler, train_dl = accelerator.prepare(LossModule(model), optimizer, scheduler, train_dl)
    val_dl = accelerator.prepare(val_dl) if val_dl is not None else None
    set_seed(cfg.seed, device_specific=True)  # each process draws its own masks and class dropout
    ema = EMA(model, oc.ema_decay) if oc.ema_decay > 0 else None
    averaged = (lambda: ema.swapped_into(model)) if ema is not None else contextlib.nullcontext
    state = TrainState()
    accelerator.register_for_checkpointing(state, *([ema] if ema is not None else []))

    def save_model(path: Path) -> None:
        with averaged():
            model.save_pretrained(path)
        tok.save_pretrained(path / "tokenizer")  # the folder is self-contained (sample_maskgit.py's last resort)

    ckpt = Checkpointer(accelerator, run_dir, every=cfg.checkpoint.every, keep_last=cfg.checkpoint.keep_last,
                        save_model=save_model, model_dir="maskgit")
    ckpt.start(cfg.to_dict(), resume_from, overwrite)
    log = TrainLogger.for_recipe(accelerator, cfg, state.step)
    if resume_from is not None:
        log.line(f"resumed from {resume_from} at step {state.step}")
    if shared:
        log.line(f"note: {shared} of the {len(val_set)} data.val rows are also data.train rows (same tokens and label)")
    log.line(f"training MaskGIT: {sum(p.numel() for p in model.parameters()):,} parameters, {len(train_set)} rows of "
             f"{mcfg.grid[0]}x{mcfg.grid[1]} tokens ({mcfg.codebook_size} codes, {mcfg.num_classes} classes) from "
             f"{train_path}, global batch {log.global_batch}, steps {state.step} -> {cfg.max_steps}")
    code = 0
    with StopRequest() as stop:
        for tokens, labels in resumed_batches(accelerator, train_dl, state, cfg.max_steps):
            step_fn.train()
            with accelerator.accumulate(step_fn):
                with accelerator.autocast():
                    loss = step_fn(tokens, labels)
                flags = StepFlags(non_finite=not torch.isfinite(loss).item(), stop=stop.requested).agree(accelerator)
                if flags.non_finite:
                    raise NonFiniteLoss(state.step + 1, {"loss": loss}, ckpt.last_good())
                log.add(**optimizer_step(accelerator, loss, step_fn.parameters(), optimizer, scheduler, oc.grad_clip))
            log.add(loss=loss)
            if not accelerator.sync_gradients:
                continue
            final = count_step(state, cfg.max_steps, log, loss, scheduler, ema, model)
            if val_dl is not None and every_or_final(cfg.log.eval_every, state.step, final):
                with averaged():
                    log.evaluation({"loss": val_loss(accelerator, model, val_dl)}, state.step, "data.val")
            if tok is not None and cfg.log.tensorboard and every_or_final(cfg.sample.every, state.step, final):
                with averaged():
                    log.images("samples", sample_grid(model, tok, cfg.sample, accelerator.device), state.step)
            if ckpt.end_step(log, state.step, final=final, stop=flags.stop):
                code = EXIT_STOPPED if flags.stop else 0
                break
    return ckpt.close(log, code, "MaskGIT", MaskGIT, cfg.hub_model_id if cfg.push_to_hub else None, cfg.hub_private)


def run(args: argparse.Namespace) -> int:
    return train(load_config(args.config, args.overrides, DEFAULTS), args.resume, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    return run_recipe(run, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    exit_process(main())
