"""Train an fsqtok tokenizer (image, depth, audio or video) with Accelerate.

    accelerate launch recipes/train_tokenizer.py --config recipes/configs/image/image.yaml [key=value ...]
    accelerate launch recipes/train_tokenizer.py --config ... --resume            # latest checkpoint of output_dir
    python recipes/train_tokenizer.py --config recipes/configs/image/image_debug.yaml max_steps=2

One readable script: copy it and change it rather than subclassing it. The YAML's keys are the
DEFAULTS below; ``key=value`` overrides use dotted names (``optim.lr=3e-4``) and an unknown key is
an error. The tokenizer section takes the fields of the modality's config dataclass
(``fsqtok.tokenizers.ImageConfig`` etc.), the loss section those of ``fsqtok.losses.TokenizerLossConfig``.
The whole config is checked before the first step (one ``error:`` line per problem).

What one run writes under ``output_dir`` (a folder holds one run: a used one is refused unless
``--resume`` continues it or ``--overwrite`` replaces it):

    checkpoints/step-000100/     accelerate state (model, optimizers, schedulers, EMA, RNG, step)
    checkpoints/step-000100/tokenizer/   a loadable save_pretrained folder (EMA weights when enabled)
    tokenizer/                   the final Hub-format tokenizer (pushed when push_to_hub=true)
    metrics.jsonl                one JSON line per log interval (and evaluation), main process only
    train.log                    the same as plain text; TensorBoard runs under logs/
    config.yaml                  the resolved config, with ``trained_on``: the content hashes of the train and val
                                 data, also named in the tokenizer's config.json; --resume refuses other data

A folder source without ``data.val_path`` has no held-out items: its metrics are measured on the training
files and logged as ``train_set``, never as ``eval``.

Exit status: 0 done, 1 error (e.g. non-finite loss: the last good checkpoint is kept), 2 bad
arguments, 130 stopped by Ctrl-C after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader

from fsqtok.cli_support import exit_process
from fsqtok.data import (DataError, DecodeFailures, EpochSampler, build_dataset, collate, dataset_fingerprint,
                         metrics_kind, metrics_note, split_sizes)
from fsqtok.losses import TokenizerLoss, TokenizerLossConfig, build_discriminator, last_decoder_weight
from fsqtok.quantizers.stats import MAX_DENSE_CODEBOOK
from fsqtok.tokenizers import (AudioConfig, AudioTokenizer, DepthConfig, DepthTokenizer, ImageConfig, ImageTokenizer,
                               VideoConfig, VideoTokenizer)
from fsqtok.training import (EMA, EXIT_STOPPED, CheckpointError, Checkpointer, ConfigChecks, NonFiniteLoss, RecipeConfigError, StepFlags,
                             StopRequest, TrainLogger, TrainState, build_accelerator, build_scheduler, fmt, load_config,
                             count_step, every_or_final, optimizer_step, prepare_output_dir, resumed_batches,
                             run_recipe)
from fsqtok.training.config import parse_override, read_yaml
from fsqtok.training.evaluation import evaluate, log_reconstructions
from fsqtok.training.schedule import SCHEDULES

TOKENIZERS = {"image": (ImageTokenizer, ImageConfig), "depth": (DepthTokenizer, DepthConfig),
              "audio": (AudioTokenizer, AudioConfig), "video": (VideoTokenizer, VideoConfig)}

# Every key a config may set, with its default. `tokenizer` is filled from the modality's config dataclass.
DEFAULTS: dict[str, Any] = {
    "modality": "image",  # image | depth | audio | video
    "output_dir": "runs/tokenizer",
    "max_steps": 1000,  # optimizer steps
    "seed": 0,
    "mixed_precision": "no",  # no | bf16 | fp16 (the quantizer always runs in fp32)
    "tokenizer": {},
    "data": {
        "source": "samples",  # samples (built-in real media) | folder
        "path": None,  # folder of training files (source=folder)
        "val_path": None,  # folder of held-out files; none: metrics on the training files, logged as train_set
        "num_train": 256,  # samples source: training items
        "num_val": 32,  # samples source: held-out items
        "sample_seed": 0,  # samples source: which crops / clips
        "size": 64,  # image, depth, video: side in pixels
        "frames": 9,  # video: frames per clip
        "seconds": 1.0,  # audio: seconds per clip
        "batch_size": 16,  # per process
        "num_workers": 0,
        "max_decode_failures": 100,  # folder source: broken files skipped before the run stops
    },
    "optim": {
        "lr": 1e-3,
        "betas": [0.9, 0.99],
        "weight_decay": 0.0,
        "schedule": "cosine",  # cosine | linear | constant, after a linear warmup
        "warmup_steps": 100,
        "min_lr_ratio": 0.1,  # final lr / lr for cosine and linear
        "grad_clip": 1.0,  # max grad norm; 0 disables
        "gradient_accumulation_steps": 1,
        "ema_decay": 0.999,  # 0 disables the EMA of the weights
    },
    "loss": dataclasses.asdict(TokenizerLossConfig()),  # see fsqtok.losses.TokenizerLossConfig
    "log": {
        "every": 10,  # steps between log lines / TensorBoard scalars
        "media_every": 200,  # steps between reconstruction images / audio / frames (0 = only at the end)
        "eval_every": 0,  # steps between held-out evaluations (0 = only at the end)
        "tensorboard": True,
        "progress_bar": True,
    },
    "checkpoint": {
        "every": 500,  # steps between checkpoints (the last step always saves one)
        "keep_last": 2,  # checkpoints kept; 0 keeps all
    },
    "push_to_hub": False,  # push the final tokenizer/ folder
    "hub_model_id": None,  # e.g. user/fsqtok-image
    "hub_private": False,
    "trained_on": None,  # written by the run, never read: content hashes of its train and val data
}


def recipe_defaults(modality: str) -> dict[str, Any]:
    if modality not in TOKENIZERS:
        raise RecipeConfigError(f"modality must be one of {', '.join(TOKENIZERS)}, got {modality!r}")
    defaults = json.loads(json.dumps(DEFAULTS))
    defaults["modality"] = modality
    fields = dataclasses.asdict(TOKENIZERS[modality][1]())  # tuples -> lists; `None` defaults accept any value
    defaults["tokenizer"] = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    return defaults


def load_recipe_config(path: str | None, overrides: list[str]):
    """YAML + overrides -> config; the modality (from an override, then the file) picks the schema."""
    modality = read_yaml(path).get("modality", "image") if path else "image"
    for text in overrides:
        keys, value = parse_override(text)
        modality = value if keys == ["modality"] else modality
    return load_config(path, overrides, recipe_defaults(modality))


def tokenizer_config(cfg):
    """The ``tokenizer`` section as the modality's config dataclass (which checks every field)."""
    return TOKENIZERS[cfg.modality][1](**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.tokenizer.items()})


def build_tokenizer(cfg) -> nn.Module:
    return TOKENIZERS[cfg.modality][0](tokenizer_config(cfg))


def check_config(cfg, resume: str | None, overwrite: bool) -> Path | None:
    """Every range and choice of the config and the output folder, reported together (types were checked
    on load); returns the checkpoint to resume from."""
    c = ConfigChecks(cfg)
    c.positive("max_steps", "data.batch_size", "data.num_train", "data.num_val", "data.size", "data.frames",
               "data.seconds", "optim.lr", "optim.gradient_accumulation_steps", "loss.disc_lr", "loss.disc_channels",
               "loss.disc_layers", "log.every", "checkpoint.every")
    c.non_negative("data.num_workers", "data.max_decode_failures", "optim.weight_decay", "optim.warmup_steps",
                   "optim.grad_clip", "log.media_every", "log.eval_every", "checkpoint.keep_last",
                   *(f"loss.{k}" for k, v in cfg.loss.items() if k.endswith("weight") and not isinstance(v, bool)),
                   "loss.adversarial_start")
    c.in_range("optim.min_lr_ratio", 0.0, 1.0)
    c.in_range("optim.ema_decay", 0.0, 1.0, high_open=True)
    c.choice("mixed_precision", ("no", "bf16", "fp16"))
    c.choice("optim.schedule", SCHEDULES)
    c.choice("data.source", ("samples", "folder"))
    c.choice("loss.reconstruction", ("l1", "l2"))
    if len(cfg.optim.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in cfg.optim.betas):
        c.error(f"optim.betas={cfg.optim.betas!r}: must be two numbers in [0, 1)")
    if cfg.data.source == "folder" and not cfg.data.path:
        c.error("data.source=folder needs data.path=FOLDER (and optionally data.val_path)")
    if cfg.push_to_hub and not cfg.hub_model_id:
        c.error("push_to_hub=true needs hub_model_id=user/name")
    try:
        tokenizer_config(cfg)
    except (TypeError, ValueError) as e:
        c.error(f"tokenizer: {e}")
    c.done()
    try:  # what the run trains on, by content: a resume compares these, not the paths that name them
        sample_rate, channels = cfg.tokenizer.get("sample_rate", 16000), cfg.tokenizer.get("in_channels")
        cfg["trained_on"] = {f"{split}_data": dataset_fingerprint(cfg.modality, cfg.data, split, sample_rate, channels)
                             for split in ("train", "val")}
        resume_from = prepare_output_dir(cfg.output_dir, cfg.to_dict(), resume=resume, overwrite=overwrite,
                                         fixed_keys=("modality", "tokenizer", "trained_on"))
    except (RecipeConfigError, CheckpointError, DataError) as e:
        c.error(str(e))
    c.done()
    return resume_from


def train(cfg, resume: str | None = None, overwrite: bool = False) -> int:
    """One run of ``cfg`` (a loaded config); returns the exit status.

    Long on purpose (about 100 lines): a recipe keeps its loop in view in one function (docs/DESIGN.md, data flow 2).
    """
    resume_from = check_config(cfg, resume, overwrite)
    run_dir, oc, lc = Path(cfg.output_dir), cfg.optim, TokenizerLossConfig(**cfg.loss)
    set_seed(cfg.seed)  # same initial weights on every process (and in scripts/demo.py's step-0 tokenizer)
    tokenizer = build_tokenizer(cfg)
    if tokenizer.codebook_size > MAX_DENSE_CODEBOOK:
        raise RecipeConfigError(f"tokenizer.levels={cfg.tokenizer['levels']}: {tokenizer.codebook_size:,} codes are too many "
                                f"for the usage statistics (max {MAX_DENSE_CODEBOOK:,}); use fewer levels or quantizer=rfsq")
    sample_rate = cfg.tokenizer.get("sample_rate", 16000)
    channels = cfg.tokenizer.get("in_channels")  # image/video: grey (1) or RGB (3) media, as the tokenizer reads
    train_set = build_dataset(cfg.modality, cfg.data, "train", sample_rate, channels)
    val_set = build_dataset(cfg.modality, cfg.data, "val", sample_rate, channels)

    accelerator = build_accelerator(run_dir, mixed_precision=cfg.mixed_precision, tensorboard=cfg.log.tensorboard,
                                    gradient_accumulation_steps=oc.gradient_accumulation_steps)
    if len(train_set) < cfg.data.batch_size * accelerator.num_processes:
        raise DataError(f"{len(train_set)} training items are too few for data.batch_size={cfg.data.batch_size} "
                        f"on {accelerator.num_processes} process(es)")
    criterion = TokenizerLoss(cfg.modality, lc, sample_rate).to(accelerator.device)
    disc = build_discriminator(cfg.modality, lc, cfg.tokenizer.get("in_channels", 3))
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=oc.lr, betas=tuple(oc.betas), weight_decay=oc.weight_decay)
    scheduler = build_scheduler(optimizer, oc, cfg.max_steps)
    # the data order depends only on (seed, epoch), so --resume replays it exactly
    loader_kw = dict(batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers, collate_fn=collate)
    train_dl = DataLoader(train_set, sampler=EpochSampler(len(train_set), cfg.seed), drop_last=True, **loader_kw)
    val_dl = DataLoader(val_set, shuffle=False, **loader_kw)
    tokenizer, optimizer, scheduler, train_dl, val_dl = accelerator.prepare(tokenizer, optimizer, scheduler, train_dl, val_dl)
    raw = accelerator.unwrap_model(tokenizer)
    raw.trained_on = dict(cfg.trained_on)  # named in the saved config.json
    ema = EMA(raw, oc.ema_decay) if oc.ema_decay > 0 else None
    raw_disc = d_opt = None
    if disc is not None:
        d_opt = torch.optim.AdamW(disc.parameters(), lr=lc.disc_lr, betas=(0.5, 0.9))
        disc, d_opt = accelerator.prepare(disc, d_opt)
        raw_disc = accelerator.unwrap_model(disc)
    state = TrainState()
    accelerator.register_for_checkpointing(state, *([ema] if ema is not None else []))
    ema_weights = (lambda: ema.swapped_into(raw)) if ema is not None else contextlib.nullcontext  # saved, evaluated

    def save_tokenizer(path: Path) -> None:
        with ema_weights():
            raw.save_pretrained(path)

    ckpt = Checkpointer(accelerator, run_dir, every=cfg.checkpoint.every, keep_last=cfg.checkpoint.keep_last,
                        save_model=save_tokenizer, model_dir="tokenizer")
    ckpt.start(cfg.to_dict(), resume_from, overwrite)
    models = [m for m in (tokenizer, disc) if m is not None]
    log = TrainLogger.for_recipe(accelerator, cfg, state.step)
    if resume:
        log.line(f"resumed from {resume_from} at step {state.step}" if resume_from else
                 f"--resume: no complete checkpoint in {run_dir / 'checkpoints'}; starting from step 0")
    log.line(f"training {cfg.modality} tokenizer: {sum(p.numel() for p in raw.parameters()):,} parameters, "
             f"{split_sizes(cfg.data, len(train_set), len(val_set))} items, global batch {log.global_batch}, "
             f"{accelerator.num_processes} process(es) on {accelerator.device}, steps {state.step} -> {cfg.max_steps}")
    if metrics_note(cfg.data):
        log.line(metrics_note(cfg.data))
    last_layer, failures = last_decoder_weight(raw), DecodeFailures(cfg.data.max_decode_failures)
    code = 0
    with StopRequest() as stop:  # Ctrl-C / SIGTERM: finish the step, save, exit 130; a second Ctrl-C stops at once
        for batch in resumed_batches(accelerator, train_dl, state, cfg.max_steps):  # exact resume position
            x = batch["x"]
            if x is None:  # every file of this batch was broken (with several processes: rare, not synchronized)
                failures.add(StepFlags(failed_files=batch["failed"]).agree(accelerator).failed_files)
                continue
            tokenizer.train()
            with accelerator.accumulate(*models):
                if raw_disc is not None:  # the generator's loss must not reach the discriminator's weights
                    raw_disc.requires_grad_(False)
                with accelerator.autocast():
                    out = tokenizer(x)
                    loss, terms = criterion.generator_loss(x, out, state.step, raw_disc, last_layer)
                flags = StepFlags(non_finite=not torch.isfinite(loss).item(), stop=stop.requested,
                                  failed_files=batch["failed"]).agree(accelerator)  # every rank stops at the same step
                failures.add(flags.failed_files)
                if flags.non_finite:
                    raise NonFiniteLoss(state.step + 1, terms, ckpt.last_good())
                terms.update(optimizer_step(accelerator, loss, tokenizer.parameters(), optimizer, scheduler, oc.grad_clip))
                if raw_disc is not None and criterion.adversarial_on(state.step):
                    raw_disc.requires_grad_(True)
                    with accelerator.autocast():
                        terms["discriminator"] = d_loss = criterion.discriminator_loss(x, out, disc)
                    accelerator.backward(d_loss)
                    d_opt.step()
                    d_opt.zero_grad(set_to_none=True)
            q = out.quantizer_output
            log.add(**terms, loss=loss, usage=q.usage(), perplexity=q.perplexity())  # every micro-batch counts
            if not accelerator.sync_gradients:
                continue
            final = count_step(state, cfg.max_steps, log, loss, scheduler, ema, raw, skipped_files=failures.count)
            if every_or_final(cfg.log.media_every, state.step, final):
                with ema_weights():
                    log_reconstructions(log, raw, val_set, cfg.modality, state.step, sample_rate)
            if every_or_final(cfg.log.eval_every, state.step, final):
                with ema_weights():
                    metrics = evaluate(tokenizer, val_dl, accelerator, cfg.modality)
                kind = metrics_kind(cfg.data)  # "eval", or "train_set" without held-out files
                log.scalars(metrics, state.step, kind=kind)
                log.line(f"{kind} step {state.step} {fmt(metrics)}")
            if ckpt.end_step(log, state.step, final=final, stop=flags.stop):
                code = EXIT_STOPPED if flags.stop else 0
                break

    return ckpt.close(log, code, "tokenizer", type(raw), cfg.hub_model_id if cfg.push_to_hub else None, cfg.hub_private)


def run(args: argparse.Namespace) -> int:
    return train(load_recipe_config(args.config, args.overrides), args.resume, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    return run_recipe(run, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    exit_process(main())
