"""Train an fsqtok tokenizer (image, depth, audio or video) with Accelerate.

    accelerate launch recipes/train_tokenizer.py --config recipes/configs/image/image.yaml [key=value ...]
    accelerate launch recipes/train_tokenizer.py --config ... --resume            # latest checkpoint of output_dir
    python recipes/train_tokenizer.py --config recipes/configs/image/image_debug.yaml max_steps=2

One readable script: copy it and change it rather than subclassing it. The YAML's keys are the
DEFAULTS below; ``key=value`` overrides use dotted names (``optim.lr=3e-4``) and an unknown key is
an error. The tokenizer section takes the fields of the modality's config dataclass
(``fsqtok.tokenizers.ImageConfig`` etc.).

What one run writes under ``output_dir``:

    checkpoints/step-000100/     accelerate state (model, optimizers, schedulers, EMA, RNG, step)
    checkpoints/step-000100/tokenizer/   a loadable save_pretrained folder (EMA weights when enabled)
    tokenizer/                   the final Hub-format tokenizer (pushed when push_to_hub=true)
    metrics.jsonl                one JSON line per log interval (and evaluation), main process only
    train.log                    the same as plain text; TensorBoard runs under logs/
    config.yaml                  the resolved config

Exit status: 0 done, 1 error (e.g. non-finite loss: the last good checkpoint is kept), 130 stopped
by Ctrl-C after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fsqtok import losses
from fsqtok.cli_support import exit_process
from fsqtok.tokenizers import AudioConfig, AudioTokenizer, DepthConfig, DepthTokenizer, ImageConfig, ImageTokenizer
from fsqtok.tokenizers import VideoConfig, VideoTokenizer
from fsqtok.training import EMA, RecipeConfigError, load_config
from fsqtok.data import DataError, DecodeFailures, EpochSampler, build_dataset, collate
from fsqtok.training.evaluation import evaluate, media_for_logging

TOKENIZERS = {
    "image": (ImageTokenizer, ImageConfig),
    "depth": (DepthTokenizer, DepthConfig),
    "audio": (AudioTokenizer, AudioConfig),
    "video": (VideoTokenizer, VideoConfig),
}

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
        "val_path": None,  # folder of held-out files; default: path
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
    "loss": {
        "reconstruction": "l1",  # image, depth, video: l1 | l2
        "reconstruction_weight": 1.0,  # audio: waveform L1 weight
        "quantizer_weight": 1.0,  # the bottleneck's own loss (VQ commitment/codebook; 0 for FSQ)
        "perceptual_weight": 0.0,  # image, video: LPIPS-style, only when weights are available locally
        "mel_weight": 1.0,  # audio: multi-scale mel loss
        "stft_weight": 1.0,  # audio: multi-resolution STFT loss
        "adversarial_weight": 0.0,  # 0 disables the discriminator
        "adversarial_start": 0,  # step at which the adversarial loss switches on
        "adaptive_weight": True,  # image, depth, video: VQGAN adaptive weight of the generator loss
        "feature_matching_weight": 2.0,  # audio: discriminator feature matching
        "disc_lr": 1e-4,
        "disc_channels": 64,  # PatchGAN ndf; audio: MPD widths (c/2, 2c, 8c, 16c, 16c), MS-STFT filters c/2
        "disc_layers": 3,  # PatchGAN downsampling layers (input side >= 2 ** (layers + 2))
    },
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
}


class NonFiniteLoss(RuntimeError):
    pass


# --------------------------------------------------------------------------- config


def recipe_defaults(modality: str) -> dict[str, Any]:
    if modality not in TOKENIZERS:
        raise RecipeConfigError(f"modality must be one of {', '.join(TOKENIZERS)}, got {modality!r}")
    defaults = json.loads(json.dumps(DEFAULTS))
    defaults["modality"] = modality
    defaults["tokenizer"] = dataclasses.asdict(TOKENIZERS[modality][1]())
    for k, v in defaults["tokenizer"].items():  # tuples -> lists; `None` defaults accept any value
        defaults["tokenizer"][k] = list(v) if isinstance(v, tuple) else v
    return defaults


def load_recipe_config(path: str | None, overrides: list[str]):
    """YAML + overrides -> config; the modality (from an override, then the file) picks the schema."""
    from fsqtok.training.config import parse_override, read_yaml

    modality = read_yaml(path).get("modality", "image") if path else "image"
    for text in overrides:
        keys, value = parse_override(text)
        if keys == ["modality"]:
            modality = value
    return load_config(path, overrides, recipe_defaults(modality))


def build_tokenizer(cfg) -> nn.Module:
    cls, config_cls = TOKENIZERS[cfg.modality]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.tokenizer.items()}
    return cls(config_cls(**fields))


# --------------------------------------------------------------------------- losses


class TokenizerLoss(nn.Module):
    """All loss terms of one modality; every term is returned on its own for logging."""

    def __init__(self, cfg, tokenizer: nn.Module) -> None:
        super().__init__()
        self.modality, self.lc = cfg.modality, cfg.loss
        lc = cfg.loss
        if self.modality == "audio":
            sr = cfg.tokenizer["sample_rate"]
            self.mel = losses.MultiScaleMelLoss(sample_rate=sr) if lc.mel_weight > 0 else None
            self.stft = losses.MultiResolutionSTFTLoss() if lc.stft_weight > 0 else None
        else:
            self.recon = losses.ReconstructionLoss(lc.reconstruction)
            self.perceptual = losses.maybe_perceptual_loss() if lc.perceptual_weight > 0 and self.modality != "depth" else None
        self.discriminator = self._discriminator(cfg) if lc.adversarial_weight > 0 else None

    def _discriminator(self, cfg) -> nn.Module:
        c = cfg.loss.disc_channels
        if self.modality == "audio":
            return AudioDiscriminators(c)
        channels = 1 if self.modality == "depth" else 3
        return losses.PatchGANDiscriminator(in_channels=channels, ndf=c, n_layers=cfg.loss.disc_layers)

    # -- what the discriminator sees: image-like (B, C, H, W) (video frames folded into the batch) or waveforms
    def _d_inputs(self, x: Tensor, out) -> tuple[Tensor, Tensor]:
        if self.modality == "depth":
            return out.target, out.reconstruction_normalized
        real, fake = x, out.reconstruction
        if self.modality == "video":
            real, fake = (v.transpose(1, 2).flatten(0, 1) for v in (real, fake))
        return real, fake

    def _logits(self, disc: nn.Module, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(logits, features) of every sub-discriminator."""
        return disc(x) if self.modality == "audio" else ([disc(x)], [])

    def generator_loss(self, x: Tensor, out, step: int, last_layer: Tensor | None, disc: nn.Module | None):
        lc, terms = self.lc, {}
        if self.modality == "audio":
            terms["waveform_l1"] = lc.reconstruction_weight * (out.reconstruction - x).abs().mean()
            if self.mel is not None:
                terms["mel"] = lc.mel_weight * self.mel(out.reconstruction, x)
            if self.stft is not None:
                terms["stft"] = lc.stft_weight * self.stft(out.reconstruction, x)
        elif self.modality == "depth":
            terms["reconstruction"] = lc.reconstruction_weight * self.recon(
                out.reconstruction_normalized, out.target, mask=out.valid_mask
            )
        else:
            terms["reconstruction"] = lc.reconstruction_weight * self.recon(out.reconstruction, x)
            if self.perceptual is not None:
                frames = (lambda v: v.transpose(1, 2).flatten(0, 1)) if self.modality == "video" else (lambda v: v)
                terms["perceptual"] = lc.perceptual_weight * self.perceptual(frames(out.reconstruction), frames(x)).mean()
        if lc.quantizer_weight > 0 and out.quantizer_loss.requires_grad:
            terms["quantizer"] = lc.quantizer_weight * out.quantizer_loss
        if disc is not None and step >= lc.adversarial_start:
            real, fake = self._d_inputs(x, out)
            fake_logits, fake_feats = self._logits(disc, fake)
            g = sum(losses.hinge_g_loss(lg) for lg in fake_logits) / len(fake_logits)
            if self.modality == "audio":
                with torch.no_grad():
                    _, real_feats = self._logits(disc, real)
                terms["feature_matching"] = lc.feature_matching_weight * losses.feature_matching_loss(real_feats, fake_feats)
                terms["generator"] = lc.adversarial_weight * g
            else:
                w = 1.0
                if lc.adaptive_weight and last_layer is not None and torch.is_grad_enabled():
                    nll = sum(v for k, v in terms.items() if k in ("reconstruction", "perceptual"))
                    w = losses.adaptive_weight(nll, g, last_layer)
                terms["generator"] = lc.adversarial_weight * w * g
        return sum(terms.values()), terms

    def discriminator_loss(self, x: Tensor, out, disc: nn.Module) -> Tensor:
        real, fake = self._d_inputs(x, out)
        n = real.shape[0]
        logits, _ = self._logits(disc, torch.cat([real.detach(), fake.detach()]))  # one forward (DDP-friendly)
        return sum(losses.hinge_d_loss(lg[:n], lg[n:]) for lg in logits) / len(logits)


class AudioDiscriminators(nn.Module):
    """DAC/EnCodec style: multi-period + multi-scale STFT discriminators as one module (one DDP wrapper)."""

    def __init__(self, c: int = 64) -> None:
        super().__init__()
        self.mpd = losses.MultiPeriodDiscriminator(channels=(max(1, c // 2), 2 * c, 8 * c, 16 * c, 16 * c))
        self.mss = losses.MultiScaleSTFTDiscriminator(filters=max(1, c // 2))

    def forward(self, x: Tensor) -> tuple[list[Tensor], list]:
        logits, feats = [], []
        for d in (self.mpd, self.mss):
            lg, ft = d(x)
            logits += list(lg)
            feats += list(ft)
        return logits, feats


def last_decoder_weight(tokenizer: nn.Module) -> Tensor:
    """The decoder's output layer weight, for the VQGAN adaptive weight."""
    return [p for n, p in tokenizer.decoder.named_parameters() if n.endswith("weight") and p.ndim > 1][-1]


# --------------------------------------------------------------------------- schedule


def lr_lambda(optim, max_steps: int):
    def f(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.schedule == "constant":
            return 1.0
        t = min(1.0, (step - optim.warmup_steps) / max(1, max_steps - optim.warmup_steps))
        r = optim.min_lr_ratio
        if optim.schedule == "linear":
            return 1.0 - (1.0 - r) * t
        if optim.schedule == "cosine":
            return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t))
        raise RecipeConfigError(f"optim.schedule must be cosine, linear or constant, got {optim.schedule!r}")

    f(0)  # validate the schedule name now
    return f


# --------------------------------------------------------------------------- checkpoints


class TrainState:
    """The step counter, saved with the accelerate state."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    root = output_dir / "checkpoints"
    return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []


def save_tokenizer(accelerator: Accelerator, tokenizer: nn.Module, ema: EMA | None, path: Path) -> None:
    """A loadable save_pretrained folder (EMA weights when enabled); main process only."""
    if not accelerator.is_main_process:
        return
    model = accelerator.unwrap_model(tokenizer)
    if ema is None:
        model.save_pretrained(path)
    else:
        with ema.swapped_into(model):
            model.save_pretrained(path)


def save_checkpoint(accelerator, cfg, tokenizer, ema, state: TrainState) -> Path:
    out = Path(cfg.output_dir)
    path = out / "checkpoints" / f"step-{state.step:06d}"
    accelerator.save_state(str(path))
    save_tokenizer(accelerator, tokenizer, ema, path / "tokenizer")
    if accelerator.is_main_process:
        (path / "DONE").write_text(f"{state.step}\n")  # a checkpoint without DONE was interrupted while saving
        keep = cfg.checkpoint.keep_last
        done = [p for p in checkpoint_dirs(out) if (p / "DONE").exists()]
        for old in done[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def find_resume(output_dir: Path, resume: str) -> Path | None:
    if resume != "latest":
        path = Path(resume)
        if not (path / "DONE").exists():
            raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder")
        return path
    done = [p for p in checkpoint_dirs(output_dir) if (p / "DONE").exists()]
    return done[-1] if done else None


# --------------------------------------------------------------------------- logging


class Logger:
    """Plain-text log lines (stdout + train.log) and metrics.jsonl on the main process; TensorBoard via Accelerate."""

    def __init__(self, accelerator: Accelerator, cfg, bar: tqdm | None) -> None:
        self.acc, self.bar = accelerator, bar
        self.main = accelerator.is_main_process
        out = Path(cfg.output_dir)
        self.text = open(out / "train.log", "a", encoding="utf-8") if self.main else None
        self.jsonl = open(out / "metrics.jsonl", "a", encoding="utf-8") if self.main else None
        self.tb = None
        if cfg.log.tensorboard:
            try:
                self.tb = accelerator.get_tracker("tensorboard", unwrap=True) if self.main else None
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self.tb = None

    def line(self, message: str) -> None:
        if not self.main:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)
        self.text.write(message + "\n")
        self.text.flush()

    def scalars(self, values: dict[str, float], step: int, kind: str = "train") -> None:
        if not self.main:
            return
        self.acc.log({f"{kind}/{k}": v for k, v in values.items()}, step=step)
        self.jsonl.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        self.jsonl.flush()

    def media(self, modality: str, items: dict[str, Tensor], step: int, sample_rate: int) -> None:
        """Reconstructions: image grids, audio clips, video frames (originals beside reconstructions)."""
        if self.tb is None:
            return
        for name, value in items.items():
            if modality == "audio":
                for i, clip in enumerate(value[:2]):
                    self.tb.add_audio(f"{name}/{i}", clip.clamp(-1, 1).mean(0), step, sample_rate=sample_rate)
            else:
                self.tb.add_image(name, value, step)  # (3, H, W) in [0, 1]
        self.tb.flush()

    def close(self) -> None:
        for f in (self.text, self.jsonl):
            if f is not None:
                f.close()


def fmt(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in values.items())


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe YAML, e.g. recipes/configs/image/image.yaml")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from a checkpoint folder, or (no value) from the latest one in output_dir")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=100 optim.lr=3e-4")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_recipe_config(args.config, args.overrides)
        return train(cfg, args.resume)
    except (RecipeConfigError, DataError, NonFiniteLoss, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1


def train(cfg, resume: str | None = None) -> int:
    out_dir = Path(cfg.output_dir)
    oc = cfg.optim
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise RecipeConfigError("push_to_hub=true needs hub_model_id=user/name")
    if cfg.log.tensorboard and importlib.util.find_spec("tensorboard") is None:
        print("note: tensorboard is not installed; logging to train.log and metrics.jsonl only", file=sys.stderr)
        cfg.log["tensorboard"] = False
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        step_scheduler_with_optimizer=False,  # the schedule counts optimizer steps, whatever the process count
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=oc.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        log_with="tensorboard" if cfg.log.tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
    )
    set_seed(cfg.seed)  # same initial weights on every process
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    accelerator.wait_for_everyone()

    # model, losses, optimizers
    tokenizer = build_tokenizer(cfg)
    criterion = TokenizerLoss(cfg, tokenizer)
    disc = criterion.discriminator
    criterion.discriminator = None  # handled (and prepared) on its own
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=oc.lr, betas=tuple(oc.betas), weight_decay=oc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(oc, cfg.max_steps))

    # data: the order depends only on (seed, epoch), so --resume replays it exactly
    sample_rate = cfg.tokenizer.get("sample_rate", 16000)
    train_set = build_dataset(cfg.modality, cfg.data, "train", sample_rate)
    val_set = build_dataset(cfg.modality, cfg.data, "val", sample_rate)
    sampler = EpochSampler(len(train_set), cfg.seed)
    loader_kw = dict(batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers, collate_fn=collate)
    train_dl = DataLoader(train_set, sampler=sampler, drop_last=True, **loader_kw)
    val_dl = DataLoader(val_set, shuffle=False, **loader_kw)
    if len(train_set) < cfg.data.batch_size * accelerator.num_processes:
        raise DataError(f"{len(train_set)} training items are too few for batch_size={cfg.data.batch_size} "
                        f"on {accelerator.num_processes} process(es)")

    tokenizer, optimizer, scheduler, train_dl, val_dl = accelerator.prepare(tokenizer, optimizer, scheduler, train_dl, val_dl)
    criterion.to(accelerator.device)
    raw = accelerator.unwrap_model(tokenizer)
    ema = EMA(raw, oc.ema_decay) if oc.ema_decay > 0 else None  # on the model's device
    if disc is not None:
        d_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.loss.disc_lr, betas=(0.5, 0.9))
        disc, d_opt = accelerator.prepare(disc, d_opt)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    start = find_resume(out_dir, resume) if resume else None
    if start is not None:
        accelerator.load_state(str(start))
        accelerator.print(f"resumed from {start} at step {state.step}")
    elif resume:
        accelerator.print(f"--resume: no complete checkpoint in {out_dir / 'checkpoints'}; starting from step 0")

    if cfg.log.tensorboard:
        hparams = {k: v for k, v in _flat(cfg.to_dict()).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("train", config=hparams)
    show_bar = cfg.log.progress_bar and accelerator.is_main_process and sys.stderr.isatty()
    bar = tqdm(total=cfg.max_steps, initial=state.step, dynamic_ncols=True) if show_bar else None
    log = Logger(accelerator, cfg, bar)
    last_layer = last_decoder_weight(raw)
    raw_disc = accelerator.unwrap_model(disc) if disc is not None else None
    failures = DecodeFailures(cfg.data.max_decode_failures)

    # Ctrl-C (or SIGTERM from a launcher or scheduler): finish the current step, save a checkpoint,
    # stop with status 130. A second Ctrl-C stops at once.
    stop = {"requested": False}

    def on_signal(signum, frame):
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    accum = oc.gradient_accumulation_steps
    global_batch = cfg.data.batch_size * accum * accelerator.num_processes
    log.line(
        f"training {cfg.modality} tokenizer: {sum(p.numel() for p in raw.parameters()):,} parameters, "
        f"{len(train_set)} train / {len(val_set)} val items, global batch {global_batch}, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}, steps {state.step} -> {cfg.max_steps}"
    )
    accelerator.step = state.step * accum  # gradient accumulation phase (also restored by load_state)
    sums: dict[str, tuple[float, int]] = {}  # term -> (sum, count) since the last log line
    n_steps, t_log = 0, time.perf_counter()
    epoch, skip = divmod(state.step * accum, len(train_dl))
    code = 0
    try:
        while state.step < cfg.max_steps:
            train_dl.set_epoch(epoch)  # the prepared loader passes it to EpochSampler
            batches = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
            for batch in batches:
                flags = torch.tensor([0.0, 0.0, float(batch["failed"])], device=accelerator.device)
                x = batch["x"]
                if x is None:  # every file of this batch was broken (with several processes: rare, not synchronized)
                    failures.add(int(accelerator.reduce(flags, "sum")[2]))
                    continue
                tokenizer.train()
                with accelerator.accumulate(tokenizer):
                    with accelerator.autocast():
                        out = tokenizer(x)
                        loss, terms = criterion.generator_loss(x, out, state.step, last_layer, raw_disc)
                    flags[0] = float(not torch.isfinite(loss).item())
                    flags[1] = float(stop["requested"])
                    flags = accelerator.reduce(flags, "sum")  # every rank stops at the same step
                    failures.add(int(flags[2]))
                    if flags[0] > 0:
                        good = [p for p in checkpoint_dirs(out_dir) if (p / "DONE").exists()]
                        raise NonFiniteLoss(
                            f"non-finite loss at step {state.step + 1} ({fmt({k: float(v.detach()) for k, v in terms.items()})}); "
                            f"stopped without saving; last good checkpoint: {good[-1] if good else 'none'}"
                        )
                    if raw_disc is not None:  # the generator step must not train the discriminator
                        raw_disc.requires_grad_(False)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and oc.grad_clip > 0:
                        terms["grad_norm"] = accelerator.clip_grad_norm_(tokenizer.parameters(), oc.grad_clip)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if disc is not None and state.step >= cfg.loss.adversarial_start:
                        raw_disc.requires_grad_(True)
                        with accelerator.autocast():
                            d_loss = criterion.discriminator_loss(x, out, disc)
                        accelerator.backward(d_loss)
                        d_opt.step()
                        d_opt.zero_grad(set_to_none=True)
                        terms["discriminator"] = d_loss
                q = out.quantizer_output
                terms.update(loss=loss, usage=q.usage(), perplexity=q.perplexity())
                for k, v in terms.items():  # every micro-batch counts; each term is averaged over its own count
                    total, n = sums.get(k, (0.0, 0))
                    sums[k] = (total + float(v.detach() if isinstance(v, Tensor) else v), n + 1)
                if not accelerator.sync_gradients:
                    continue
                # one optimizer step done
                state.step += 1
                n_steps += 1
                if ema is not None:
                    ema.update(raw)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss):.4f}")
                if state.step % cfg.log.every == 0 or state.step == cfg.max_steps:
                    local = torch.tensor([t / n for t, n in sums.values()], device=accelerator.device)
                    values = dict(zip(sums, accelerator.reduce(local, "mean").tolist()))
                    dt = time.perf_counter() - t_log
                    values.update(lr=scheduler.get_last_lr()[0], steps_per_s=n_steps / dt,
                                  samples_per_s=n_steps * global_batch / dt, skipped_files=failures.count)
                    log.scalars(values, state.step)
                    log.line(f"step {state.step}/{cfg.max_steps} {fmt(values)}")
                    sums, n_steps, t_log = {}, 0, time.perf_counter()
                final = state.step == cfg.max_steps
                if (cfg.log.media_every and state.step % cfg.log.media_every == 0) or final:
                    log_media(accelerator, cfg, raw, ema, val_set, log, state.step, sample_rate)
                if (cfg.log.eval_every and state.step % cfg.log.eval_every == 0) or final:
                    run_eval(accelerator, cfg, tokenizer, raw, ema, val_dl, log, state.step)
                if state.step % cfg.checkpoint.every == 0 or final or flags[1] > 0:
                    path = save_checkpoint(accelerator, cfg, tokenizer, ema, state)
                    log.line(f"saved checkpoint {path}")
                if flags[1] > 0:
                    log.line(f"interrupted at step {state.step}: checkpoint saved; continue with --resume")
                    code = 130
                    break
                if final:
                    break
            if code or state.step >= cfg.max_steps:
                break
            epoch, skip = epoch + 1, 0
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()

    if code == 0:
        final_dir = out_dir / "tokenizer"
        save_tokenizer(accelerator, tokenizer, ema, final_dir)
        log.line(f"saved tokenizer {final_dir}")
        if cfg.push_to_hub and accelerator.is_main_process:
            url = accelerator.unwrap_model(tokenizer).__class__.from_pretrained(final_dir).push_to_hub(
                cfg.hub_model_id, private=cfg.hub_private
            )
            log.line(f"pushed to {url}")
    log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()  # also ends the process group
    return code


def log_media(accelerator, cfg, raw, ema, val_set, log: Logger, step: int, sample_rate: int) -> None:
    if not accelerator.is_main_process or log.tb is None:
        return
    x = torch.stack([val_set[i] for i in range(min(4, len(val_set)))]).to(accelerator.device)
    raw.eval()
    with torch.no_grad(), (ema.swapped_into(raw) if ema is not None else _null()):
        y = raw(x).reconstruction
    log.media(cfg.modality, media_for_logging(cfg.modality, x, y), step, sample_rate)


def run_eval(accelerator, cfg, tokenizer, raw, ema, val_dl, log: Logger, step: int) -> None:
    """Held-out metrics with the EMA weights (gathered across processes)."""
    with ema.swapped_into(raw) if ema is not None else _null():
        metrics = evaluate(tokenizer, val_dl, accelerator, cfg.modality)
    log.scalars(metrics, step, kind="eval")
    log.line(f"eval step {step} {fmt(metrics)}")


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


if __name__ == "__main__":
    exit_process(main())
