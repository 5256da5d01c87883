"""What a run reports: a progress bar, plain log lines, ``metrics.jsonl`` and TensorBoard.

Files under ``output_dir`` (main process only):

* ``train.log``: every plain line (also printed, above the progress bar when there is one);
* ``metrics.jsonl``: one JSON object per log interval or evaluation,
  ``{"kind": "train" | "eval", "step": int, name: float, ...}``;
* ``logs/``: TensorBoard events, through the Accelerator's tracker.

Loss terms are added per micro-batch; at each log interval every term is averaged over its own
count and then across processes, and one plain line states the step, the terms, the learning
rate, the throughput, and the number of processes and the device::

    log = TrainLogger(accelerator, out, total_steps=1000, start_step=0, every=10, global_batch=64)
    log.add(loss=loss, mse=mse)          # every micro-batch
    log.step(step)                       # every optimizer step
    if log.due(step): log.flush(step, lr=scheduler.get_last_lr()[0])
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..files import atomic_write_text
from .config import Config


def fmt(values: Mapping[str, float]) -> str:
    """``{"loss": 0.12345}`` -> ``"loss=0.1235"``."""
    return " ".join(f"{k}={v:.4g}" for k, v in values.items())


def flat_config(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"optim.lr": 0.001, ...}`` with only scalar values (TensorBoard hparams)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flat_config(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)):
            out[f"{prefix}{k}"] = v
    return out


def _keep_until(path: Path, step: int) -> None:
    """Drop the lines of ``metrics.jsonl`` after ``step`` (a resumed run writes them again)."""
    if not path.exists():
        return
    kept = [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip() and json.loads(s).get("step", 0) <= step]
    atomic_write_text(path, "".join(s + "\n" for s in kept))


class TrainLogger:
    """Logging for one run; every process constructs it, only the main process writes.

    Args:
        accelerator: the run's Accelerator (built with ``log_with="tensorboard"`` for TensorBoard).
        output_dir: the run folder.
        total_steps: the last optimizer step (for the bar and the log lines).
        start_step: the step the run starts from (a resumed run drops later ``metrics.jsonl`` lines).
        every: optimizer steps between log lines.
        global_batch: samples per optimizer step over all processes (for ``samples_per_s``).
        tensorboard: write TensorBoard scalars and media (the Accelerator must log with TensorBoard).
        progress_bar: show tqdm on the main process when stderr is a terminal.
        hparams: the config, logged once as TensorBoard hyper-parameters.
    """

    def __init__(self, accelerator, output_dir: str | Path, *, total_steps: int, start_step: int = 0,
                 every: int = 10, global_batch: int = 1, tensorboard: bool = True, progress_bar: bool = True,
                 hparams: Mapping[str, Any] | None = None) -> None:
        self.acc, self.out = accelerator, Path(output_dir)
        self.main = accelerator.is_main_process
        self.total, self.every, self.global_batch = total_steps, every, global_batch
        self.sums: dict[str, tuple[float, int]] = {}
        self.n_steps, self.t0 = 0, time.perf_counter()
        self.where = f"{accelerator.num_processes} process(es) on {accelerator.device}"
        self.text = self.jsonl = self.tb = self.bar = None
        if tensorboard:
            accelerator.init_trackers("train", config=flat_config(hparams or {}))
            self.tb = accelerator.get_tracker("tensorboard", unwrap=True) if self.main else None
        if not self.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        _keep_until(self.out / "metrics.jsonl", start_step)
        self.text = open(self.out / "train.log", "a", encoding="utf-8")
        self.jsonl = open(self.out / "metrics.jsonl", "a", encoding="utf-8")
        if progress_bar and sys.stderr.isatty():
            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True)

    @classmethod
    def for_recipe(cls, accelerator, cfg: Config, start_step: int) -> TrainLogger:
        """The logger of a recipe run, from the config keys every recipe has: ``output_dir``,
        ``max_steps``, ``data.batch_size``, ``optim.gradient_accumulation_steps`` and ``log.every`` /
        ``log.tensorboard`` / ``log.progress_bar``; the whole config is logged as hyper-parameters.
        ``global_batch`` = batch size x accumulation x processes."""
        global_batch = cfg.data.batch_size * cfg.optim.gradient_accumulation_steps * accelerator.num_processes
        return cls(accelerator, cfg.output_dir, total_steps=cfg.max_steps, start_step=start_step, every=cfg.log.every,
                   global_batch=global_batch, tensorboard=cfg.log.tensorboard, progress_bar=cfg.log.progress_bar,
                   hparams=cfg.to_dict())

    def line(self, message: str) -> None:
        """One plain line: printed (above the bar) and appended to ``train.log``."""
        if not self.main:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)
        if self.text is not None:
            self.text.write(message + "\n")
            self.text.flush()

    def add(self, **terms: Tensor | float) -> None:
        """Add one micro-batch's terms (scalars); each is averaged over its own count at :meth:`flush`."""
        for k, v in terms.items():
            total, n = self.sums.get(k, (0.0, 0))
            self.sums[k] = (total + float(v.detach() if isinstance(v, Tensor) else v), n + 1)

    def step(self, step: int, **postfix: float) -> None:
        """One optimizer step done (moves the bar; ``postfix`` values are shown beside it)."""
        self.n_steps += 1
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})

    def due(self, step: int, final: bool = False) -> bool:
        return final or step % self.every == 0

    def flush(self, step: int, **extra: float) -> dict[str, float]:
        """Average the terms since the last flush over their counts and across processes, add
        ``extra`` (e.g. ``lr``) and the throughput, and log them (one line, TensorBoard, jsonl).
        Every process must call it (the average is an all-reduce)."""
        local = torch.tensor([t / n for t, n in self.sums.values()], dtype=torch.float64, device=self.acc.device)
        values = dict(zip(self.sums, self.acc.reduce(local, "mean").tolist()))
        dt = max(time.perf_counter() - self.t0, 1e-9)
        values.update(extra, steps_per_s=self.n_steps / dt, samples_per_s=self.n_steps * self.global_batch / dt)
        self.scalars(values, step)
        self.line(f"step {step}/{self.total} {fmt(values)} [{self.where}]")
        self.sums, self.n_steps, self.t0 = {}, 0, time.perf_counter()
        return values

    def scalars(self, values: Mapping[str, float], step: int, kind: str = "train") -> None:
        """``values`` to TensorBoard (as ``kind/name``) and one ``metrics.jsonl`` line."""
        if not self.main:
            return
        if self.tb is not None:
            self.acc.log({f"{kind}/{k}": v for k, v in values.items()}, step=step)
        self.jsonl.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        self.jsonl.flush()

    def evaluation(self, values: Mapping[str, float], step: int, source: str, kind: str = "eval") -> None:
        """Held-out metrics everywhere at once: TensorBoard and ``metrics.jsonl`` (:meth:`scalars`) and the
        line ``eval step N (source) loss=...`` on the console and in ``train.log``. ``source`` names the
        data they were measured on (e.g. ``data.val``)."""
        self.scalars(values, step, kind=kind)
        self.line(f"{kind} step {step} ({source}) {fmt(values)}")

    def images(self, tag: str, image: Tensor, step: int) -> None:
        """A ``(3, H, W)`` image in [0, 1] (e.g. a grid of samples) to TensorBoard."""
        if self.tb is not None:
            self.tb.add_image(tag, image.detach().float().clamp(0, 1).cpu(), step)
            self.tb.flush()

    def audio(self, tag: str, clip: Tensor, step: int, sample_rate: int) -> None:
        """A mono ``(N,)`` clip in [-1, 1] to TensorBoard."""
        if self.tb is not None:
            self.tb.add_audio(tag, clip.detach().float().clamp(-1, 1).cpu(), step, sample_rate=sample_rate)
            self.tb.flush()

    def close(self) -> None:
        """Close the bar and the files (TensorBoard ends with ``accelerator.end_training()``)."""
        if self.bar is not None:
            self.bar.close()
        for f in (self.text, self.jsonl):
            if f is not None:
                f.close()
        self.text = self.jsonl = self.bar = None
