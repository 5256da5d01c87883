"""Train UViM (stage I: oracle + base model; stage II: the guide-code LM) with Accelerate.

    accelerate launch recipes/train_uvim.py --config recipes/configs/uvim/depth_stage1.yaml [key=value ...]
    accelerate launch recipes/train_uvim.py --config recipes/configs/uvim/depth_stage2.yaml stage1=runs/uvim/depth_stage1/model
    python recipes/train_uvim.py --config recipes/configs/uvim/depth_stage1_debug.yaml max_steps=2

One readable script for both stages (``stage: 1`` or ``2``). The ``model`` section takes the fields of
``fsqtok.generative.uvim.stage1.UViMConfig`` (stage I), the ``lm`` section those of ``UViMLMConfig`` that are
not derived from the stage-I model (stage II). Data: the offline synthetic pairs of ``fsqtok.datasets.uvim_pairs``, or
(``data.source=folder data.path=DIR``) your own pairs through the shared paired layer (``UViMFolderPairs``).
Stage II trains on the codes the frozen stage-I oracle makes of each target; its model folder holds the
stage-I model it was trained with in ``stage1/``, named in its config.json by path and weights hash.
Both stages record what they trained on by content (``trained_on``: the data's fingerprints and, for
stage II, the stage-I weights hash) in config.yaml and the model's config.json; ``--resume`` refuses a
run whose data or stage-I model changed, whatever their paths. A folder source without ``data.val_path``
has no held-out pairs: its metrics are measured on the training pairs and logged as ``train_set``.

What one run writes under ``output_dir`` (as every fsqtok recipe: ``--resume`` continues a run,
``--overwrite`` replaces it):

    checkpoints/step-000100/      accelerate state (model, optimizer, scheduler, EMA, RNG, step) + model/
    model/                        the final Hub-format model (EMA weights when enabled)
    metrics.jsonl, train.log      training and evaluation figures; TensorBoard (with prediction images) under logs/
    config.yaml                   the resolved config

Exit status: 0 done, 1 error, 2 bad arguments, 130 stopped by Ctrl-C after saving a checkpoint.
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
from torch.utils.data import DataLoader

from fsqtok.cli_support import exit_process
from fsqtok.data import DataError, EpochSampler, metrics_kind, metrics_note, split_sizes
from fsqtok.datasets.uvim_pairs import UViMFolderPairs, UViMPairs
from fsqtok.generative.uvim.stage1 import UViMConfig, UViMStage1
from fsqtok.generative.uvim.evaluation import evaluate
from fsqtok.generative.uvim.lm import UViMLM, UViMLMConfig
from fsqtok.hub import CheckpointError as HubCheckpointError, ConfigError
from fsqtok.training import (EMA, EXIT_STOPPED, Checkpointer, CheckpointError, ConfigChecks, NonFiniteLoss,
                             StepFlags, StopRequest, TrainLogger, TrainState, build_accelerator, build_scheduler,
                             count_step, every_or_final, fmt, load_config, optimizer_step, prepare_output_dir,
                             resumed_batches, run_recipe)
from fsqtok.training.schedule import SCHEDULES

STEM_PLACEHOLDER = {"stage1": {"stem_width": 1}}  # check_config: the stage-I trunk shape is only known at build
LM_FIELDS = ("patch_size", "width", "encoder_layers", "decoder_layers", "heads", "mlp_ratio", "dropout", "stem")
_model_defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(UViMConfig()).items()}
_model_defaults.pop("task")  # the top-level `task` sets it

DEFAULTS: dict[str, Any] = {
    "stage": 1,  # 1: oracle + base model; 2: the LM that predicts the code
    "task": "depth",  # depth | colorization | panoptic
    "output_dir": "runs/uvim",
    "max_steps": 1000,  # optimizer steps
    "seed": 0,
    "mixed_precision": "no",  # no | bf16 | fp16 (the quantizer always runs in fp32)
    "model": _model_defaults,  # stage I: UViMConfig fields (image_size must equal data.size)
    "stage1": None,  # stage II: the stage-I model folder (or Hub repo id)
    "lm": {k: getattr(UViMLMConfig(), k) for k in LM_FIELDS},  # stage II: UViMLMConfig fields
    "data": {
        "source": "synthetic",  # synthetic (offline pairs, fsqtok.datasets.uvim_pairs) | folder (your pairs)
        "path": None,  # folder source: training pairs (image/ + depth/ | semantic/ + instance/ sub-folders)
        "val_path": None,  # folder source: held-out pairs; none: metrics on the training pairs, logged as train_set
        "num_train": 4096,  # synthetic source: training pairs
        "num_val": 64,  # synthetic source: held-out pairs
        "seed": 0,
        "batch_size": 16,  # per process
        "num_workers": 0,
        "cache": False,  # synthetic source: keep rendered training pairs in memory (small num_train, many epochs)
        "cache_dir": None,  # synthetic source: render the training pairs once into this folder; later runs load them
    },
    "optim": {"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 1e-5, "schedule": "cosine", "warmup_steps": 100,
              "min_lr_ratio": 0.1, "grad_clip": 1.0, "gradient_accumulation_steps": 1, "ema_decay": 0.0},
    "log": {"every": 10, "media_every": 200, "eval_every": 0, "tensorboard": True, "progress_bar": True},
    "checkpoint": {"every": 500, "keep_last": 2},
    "push_to_hub": False,
    "hub_model_id": None,
    "hub_private": False,
    "trained_on": None,  # written by the run, never read: content hashes of its data (and stage-I model)
}


def build_stage1(cfg) -> UViMStage1:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.items()}
    return UViMStage1(UViMConfig(task=cfg.task, **fields))


def check_config(cfg, resume: str | None, overwrite: bool) -> Path | None:
    """Every range and choice, reported together; returns the checkpoint to resume from."""
    c = ConfigChecks(cfg)
    c.positive("max_steps", "data.num_train", "data.num_val", "data.batch_size", "optim.lr",
               "optim.gradient_accumulation_steps", "log.every", "checkpoint.every")
    c.non_negative("data.num_workers", "optim.weight_decay", "optim.warmup_steps", "optim.grad_clip",
                   "log.media_every", "log.eval_every", "checkpoint.keep_last")
    c.in_range("optim.min_lr_ratio", 0.0, 1.0)
    c.in_range("optim.ema_decay", 0.0, 1.0, high_open=True)
    c.choice("mixed_precision", ("no", "bf16", "fp16"))
    c.choice("optim.schedule", SCHEDULES)
    c.choice("data.source", ("synthetic", "folder"))
    if cfg.data.source == "folder" and not cfg.data.path:
        c.error("data.source=folder needs data.path=FOLDER (and optionally data.val_path)")
    if cfg.stage not in (1, 2):
        c.error(f"stage={cfg.stage!r}: must be 1 or 2")
    if cfg.stage == 2 and not cfg.stage1:
        c.error("stage=2 needs stage1=FOLDER (the stage-I model folder, e.g. runs/uvim/depth_stage1/model)")
    if cfg.push_to_hub and not cfg.hub_model_id:
        c.error("push_to_hub=true needs hub_model_id=user/name")
    try:
        # stem=stage1 takes the trunk's shape from the stage-I model (UViMLMConfig.for_stage1, at build time)
        build_stage1(cfg) if cfg.stage == 1 else UViMLMConfig(**cfg.lm, **STEM_PLACEHOLDER.get(cfg.lm.stem, {}))
    except (ConfigError, TypeError, ValueError) as e:
        c.error(f"{'model' if cfg.stage == 1 else 'lm'}: {e}")
    c.done()
    try:  # what the run trains on, by content: a resume compares these, not the paths that name them
        cfg["trained_on"] = trained_on(cfg, *build_inputs(cfg))
        resume_from = prepare_output_dir(cfg.output_dir, cfg.to_dict(), resume=resume, overwrite=overwrite,
                                         fixed_keys=("stage", "task", "model", "lm", "trained_on"))
    except (CheckpointError, DataError, ValueError) as e:
        c.error(str(e))
    c.done()
    return resume_from


def build_inputs(cfg) -> tuple[UViMStage1, UViMStage1 | None, torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """``(stage-I model to train or frozen, the stage-I model stage II reads or None, train set, val set)``."""
    frozen = load_stage1(cfg) if cfg.stage == 2 else None
    stage1 = frozen if frozen is not None else build_stage1(cfg)
    size, d = stage1.config.image_size, cfg.data
    if d.source == "folder":  # without val_path the "val" set is the training pairs: metrics_kind says train_set
        train_set = UViMFolderPairs(cfg.task, d.path, size, train=True, seed=cfg.seed)
        val_set = UViMFolderPairs(cfg.task, d.val_path or d.path, size, train=False)
    else:
        train_set = UViMPairs(cfg.task, "train", d.num_train, size, d.seed, cache=d.cache, cache_dir=d.cache_dir)
        val_set = UViMPairs(cfg.task, "val", d.num_val, size, d.seed)
    return stage1, frozen, train_set, val_set


def trained_on(cfg, stage1, frozen, train_set, val_set) -> dict[str, str]:
    """The run's inputs by content hash: ``train_data``, ``val_data`` and (stage II) ``stage1`` weights."""
    named = {"train_data": train_set.fingerprint(), "val_data": val_set.fingerprint()}
    return {**named, **({"stage1": frozen.weights_hash()} if frozen is not None else {})}


def load_stage1(cfg) -> UViMStage1:
    try:
        stage1 = UViMStage1.from_pretrained(cfg.stage1)
    except (HubCheckpointError, ConfigError, OSError) as e:
        raise CheckpointError(f"stage1={cfg.stage1}: {e}") from None
    if stage1.config.task != cfg.task or stage1.config.no_code:
        raise CheckpointError(f"stage1={cfg.stage1}: a {stage1.config.task} model"
                              f"{' without a code (no_code)' if stage1.config.no_code else ''}; stage II needs a "
                              f"{cfg.task} model with a code")
    return stage1.requires_grad_(False)


def train(cfg, resume: str | None = None, overwrite: bool = False) -> int:
    """One run of ``cfg``; returns the exit status.

    Long on purpose (about 90 lines): a recipe keeps its loop in view in one function (docs/DESIGN.md, data flow 2).
    """
    resume_from = check_config(cfg, resume, overwrite)
    run_dir, oc = Path(cfg.output_dir), cfg.optim
    set_seed(cfg.seed)
    stage1, frozen, train_set, val_set = build_inputs(cfg)  # the stage-I weights are seeded after set_seed
    if frozen is None:
        model = stage1
    else:
        model = UViMLM(UViMLMConfig.for_stage1(stage1, "stage1", **cfg.lm)).attach_stage1(stage1)
        if model.config.stem == "stage1":  # start from the stage-I trunk (a resumed run then loads its own weights)
            model.init_stem_from(stage1)
    model.trained_on = dict(cfg.trained_on)  # named in the saved config.json
    accelerator = build_accelerator(run_dir, mixed_precision=cfg.mixed_precision, tensorboard=cfg.log.tensorboard,
                                    gradient_accumulation_steps=oc.gradient_accumulation_steps)
    if len(train_set) < cfg.data.batch_size * accelerator.num_processes:
        raise DataError(f"{len(train_set)} training pairs are too few for data.batch_size={cfg.data.batch_size} "
                        f"on {accelerator.num_processes} process(es)")
    stage1.to(accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=oc.lr, betas=tuple(oc.betas), weight_decay=oc.weight_decay)
    scheduler = build_scheduler(optimizer, oc, cfg.max_steps)
    kw = dict(batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers)
    train_dl = DataLoader(train_set, sampler=EpochSampler(len(train_set), cfg.seed), drop_last=True, **kw)
    val_dl = DataLoader(val_set, shuffle=False, **kw)
    model, optimizer, scheduler, train_dl, val_dl = accelerator.prepare(model, optimizer, scheduler, train_dl, val_dl)
    raw = accelerator.unwrap_model(model)
    ema = EMA(raw, oc.ema_decay) if oc.ema_decay > 0 else None
    state = TrainState()
    accelerator.register_for_checkpointing(state, *([ema] if ema is not None else []))
    averaged = (lambda: ema.swapped_into(raw)) if ema is not None else contextlib.nullcontext

    def save_model(path: Path) -> None:  # EMA weights when enabled; stage II writes its stage-I model in stage1/
        with averaged():
            raw.save_pretrained(path)

    ckpt = Checkpointer(accelerator, run_dir, every=cfg.checkpoint.every, keep_last=cfg.checkpoint.keep_last,
                        save_model=save_model, model_dir="model")
    ckpt.start(cfg.to_dict(), resume_from, overwrite)
    log = TrainLogger.for_recipe(accelerator, cfg, state.step)
    if resume_from is not None:
        log.line(f"resumed from {resume_from} at step {state.step}")
    if metrics_note(cfg.data):
        log.line(metrics_note(cfg.data))
    log.line(f"training UViM stage {cfg.stage} ({cfg.task}, {stage1.config.quantizer}"
             f"{', no code' if stage1.config.no_code else ''}): {sum(p.numel() for p in raw.parameters()):,} "
             f"parameters, {split_sizes(cfg.data, len(train_set), len(val_set))} items, "
             f"global batch {log.global_batch}, "
             f"{accelerator.num_processes} process(es) on {accelerator.device}, steps {state.step} -> {cfg.max_steps}")
    code = 0
    with StopRequest() as stop:  # dataset=: the random crops of folder pairs depend on (seed, epoch, index)
        for batch in resumed_batches(accelerator, train_dl, state, cfg.max_steps, dataset=train_set):
            x, y = batch["image"], batch["target"]
            model.train()
            with accelerator.accumulate(model), accelerator.autocast():
                if cfg.stage == 1:  # forward through the (DDP-)prepared model, so gradients are synchronized
                    loss, aux = raw.loss_from_output(model(x, y), y)
                    terms = {"task": aux["task"], "quant": aux["quant"]}
                    q = aux["out"].quant
                    if q is not None:
                        terms.update(usage=q.usage(), perplexity=q.perplexity(), kept=aux["out"].keep.float().mean())
                else:
                    with torch.no_grad():
                        tokens = stage1.encode(x, y).indices.flatten(1)
                    loss, acc = raw.loss_from_logits(model(stage1.task.context(x), tokens), tokens)
                    terms = {"token_accuracy": acc}
                flags = StepFlags(non_finite=not torch.isfinite(loss).item(), stop=stop.requested).agree(accelerator)
                if flags.non_finite:
                    raise NonFiniteLoss(state.step + 1, terms, ckpt.last_good())
                terms.update(optimizer_step(accelerator, loss, model.parameters(), optimizer, scheduler, oc.grad_clip))
            log.add(**terms, loss=loss)
            if not accelerator.sync_gradients:
                continue
            final = count_step(state, cfg.max_steps, log, loss, scheduler, ema, raw)
            if every_or_final(cfg.log.media_every, state.step, final):
                with averaged():
                    log_predictions(cfg, stage1, raw, val_set, log, state.step, accelerator.device)
            if every_or_final(cfg.log.eval_every, state.step, final):
                with averaged():
                    mode = "lm" if cfg.stage == 2 else ("no_code" if stage1.config.no_code else "oracle")
                    metrics = evaluate(stage1, val_dl, mode, raw if cfg.stage == 2 else None,
                                       gather=accelerator.gather_for_metrics)
                kind = metrics_kind(cfg.data)  # "eval", or "train_set" without held-out pairs
                log.scalars(metrics, state.step, kind=kind)
                log.line(f"{kind} step {state.step} ({mode}) {fmt(metrics)}")
            if ckpt.end_step(log, state.step, final=final, stop=flags.stop):
                code = EXIT_STOPPED if flags.stop else 0
                break
    return ckpt.close(log, code, "model", type(raw), cfg.hub_model_id if cfg.push_to_hub else None, cfg.hub_private)


@torch.no_grad()
def log_predictions(cfg, stage1: UViMStage1, raw, val_set, log: TrainLogger, step: int, device) -> None:
    """TensorBoard grid: rows of images, targets, and predictions (oracle code or LM-decoded code)."""
    if log.tb is None:
        return
    items = [val_set[i] for i in range(min(4, len(val_set)))]
    x = torch.stack([it["image"] for it in items]).to(device)
    y = torch.stack([it["target"] for it in items]).to(device)
    stage1.eval()
    raw.eval()
    if cfg.stage == 1:
        pred = stage1.oracle_predict(x, y)[0]
    else:
        pred = stage1.predict(x, raw.generate(stage1.task.context(x)))
    task = stage1.task
    rows = torch.cat([(x + 1) / 2, task.visualize(y), task.visualize(pred)])
    from torchvision.utils import make_grid

    log.images("predictions", make_grid(rows, nrow=len(items)), step)


def run(args: argparse.Namespace) -> int:
    return train(load_config(args.config, args.overrides, json.loads(json.dumps(DEFAULTS))), args.resume, args.overwrite)


def main(argv: list[str] | None = None) -> int:
    return run_recipe(run, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    exit_process(main())
