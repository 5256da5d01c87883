"""Checkpoints and the output folder of a training run.

Layout under ``output_dir`` (every recipe)::

    config.yaml                     the resolved config of the run
    checkpoints/step-000100/        accelerate ``save_state`` (models, optimizers, schedulers, RNG, registered objects)
    checkpoints/step-000100/<model_dir>/   a loadable ``save_pretrained`` folder, written by ``save_model``
    checkpoints/step-000100/config.yaml    the config that wrote it
    checkpoints/step-000100/DONE    written last: a folder without it was interrupted while saving
    <model_dir>/                    the final model (:meth:`Checkpointer.save_final`)

A folder holds one run. :func:`prepare_output_dir` refuses a used ``output_dir`` unless the run is
resumed or ``overwrite`` is given, so checkpoints, ``metrics.jsonl`` and ``config.yaml`` of two runs
never mix, and ``keep_last`` only ever prunes checkpoints of the run being trained.

    start = prepare_output_dir(out, cfg.to_dict(), resume=args.resume, overwrite=args.overwrite)
    ...  # build the Accelerator, prepare models
    ckpt = Checkpointer(accelerator, out, every=500, keep_last=2, save_model=save_fn, model_dir="tokenizer")
    ckpt.start(cfg.to_dict(), resume_from=start, overwrite=args.overwrite)
    ... if ckpt.due(step, final): ckpt.save(step)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import RecipeConfigError

RUN_FILES = ("config.yaml", "metrics.jsonl", "train.log", "checkpoints")  # their presence marks a used folder


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed (incomplete, from another config, or another run's folder)."""


class TrainState:
    """The optimizer-step counter, saved with the accelerate state (``register_for_checkpointing``)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.step = int(state["step"])


def step_of(path: Path) -> int:
    """``.../step-000120`` -> 120."""
    return int(path.name.split("-")[1])


def checkpoint_dirs(output_dir: str | Path, complete: bool = True) -> list[Path]:
    """``output_dir/checkpoints/step-*`` by step; only those with a ``DONE`` marker when ``complete``."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted((p for p in dirs if not complete or (p / "DONE").exists()), key=step_of)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


RUN_WRITTEN = ("output_dir", "trained_on")  # set by the run itself, not given: compared only when named in keys


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether dotted ``key`` is one of ``prefixes`` or lies in one of those sections."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """Dotted keys whose values differ: only under ``keys`` prefixes if given, else all but
    :data:`RUN_WRITTEN` (``output_dir``, and the ``trained_on`` a recipe records of its data)."""
    a, b = _flat(old), _flat(new)
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if keys is None:
        return [k for k in diff if not _under(k, RUN_WRITTEN)]
    return [k for k in diff if _under(k, tuple(keys))]


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def prepare_output_dir(output_dir: str | Path, config: Mapping[str, Any], *, resume: str | None = None,
                       overwrite: bool = False, fixed_keys: Iterable[str] = ()) -> Path | None:
    """Check that a run may write to ``output_dir``; return the checkpoint to resume from, if any.

    Reads only (every process may call it before the Accelerator exists); raises
    :class:`RecipeConfigError` or :class:`CheckpointError` with a one-line message.

    Args:
        output_dir: the run's folder; it may not exist yet, and must not be a file.
        config: the resolved config (a plain nested dict).
        resume: ``None``; ``"latest"`` (the newest complete checkpoint of ``output_dir``, or none);
            or a checkpoint folder.
        overwrite: a used folder is allowed; :meth:`Checkpointer.start` clears the old run's outputs.
        fixed_keys: config prefixes a resumed run may not change (those that shape the weights).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise RecipeConfigError(f"output_dir={out} is a file; choose a folder")
    if resume is not None and overwrite:
        raise RecipeConfigError("--resume and --overwrite exclude each other")
    used = out.is_dir() and any((out / name).exists() for name in RUN_FILES)
    if resume is None:
        if used and not overwrite:
            old = _read_config(out / "config.yaml")
            diff = config_diff(old, config) if old is not None else []
            why = f"a run with a different config (differs in {', '.join(diff[:5])})" if diff else "a run"
            raise RecipeConfigError(f"output_dir {out} already holds {why}; pass --resume to continue it, "
                                    "--overwrite to replace it, or choose another output_dir")
        return None
    done = checkpoint_dirs(out)
    if resume == "latest":
        if not done:
            return None
        path = done[-1]
    else:
        path = Path(resume)
        if not (path / "DONE").is_file():
            raise CheckpointError(f"--resume {resume}: not a complete checkpoint folder (no DONE marker)")
        own = path.resolve().parent == (out / "checkpoints").resolve()
        if not own and used:
            raise CheckpointError(f"--resume {resume}: output_dir {out} holds another run; "
                                  "resume into an empty output_dir or into the checkpoint's own run folder")
        newer = [p.name for p in done if step_of(p) > step_of(path)]
        if own and newer:
            raise CheckpointError(f"--resume {resume}: {out / 'checkpoints'} holds newer checkpoints ({', '.join(newer)}) "
                                  "that a resumed run would mix with; resume from the newest or move them away")
    check_resume_config(path, config, fixed_keys)
    return path


def check_resume_config(checkpoint: Path, config: Mapping[str, Any], keys: Iterable[str],
                        what: str = "model config") -> None:
    """Raise :class:`CheckpointError` when ``config`` differs under ``keys`` from the config that wrote
    ``checkpoint`` (its own ``config.yaml``, else its run's). Recipes call it again once they know
    what their data is (e.g. a ``trained_on`` section of content hashes), since paths prove nothing."""
    saved = _read_config(checkpoint / "config.yaml") or _read_config(checkpoint.parent.parent / "config.yaml")
    keys = tuple(keys)
    diff = config_diff(saved, config, keys) if saved is not None else []
    if diff and not any(_under(k, keys) for k in _flat(saved)):
        raise CheckpointError(f"--resume {checkpoint}: the checkpoint records no {what} ({', '.join(keys)}; saved by "
                              "an older fsqtok), so what it was trained on cannot be checked; start over with --overwrite")
    if diff:
        flat_old, flat_new = _flat(saved), _flat(config)
        changes = "; ".join(f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in diff[:3])
        raise CheckpointError(f"--resume {checkpoint}: the checkpoint was trained with another {what} ({changes}); "
                              "resume with the config and data it was trained with")


def unreadable_file(folder: Path) -> tuple[Path, str] | None:
    """The first file of a checkpoint folder that cannot be read back (``.safetensors`` headers and
    tensors; ``.bin``/``.pt``/``.pkl`` by their zip CRCs or pickle opcodes, never unpickled), with a short reason."""
    import pickletools
    import zipfile

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for p in sorted(folder.rglob("*")):
        try:
            if p.suffix == ".safetensors":
                load_file(p)
            elif p.suffix in (".bin", ".pt", ".pkl") and zipfile.is_zipfile(p):  # torch.save's format
                with zipfile.ZipFile(p) as z:
                    if z.testzip() is not None:
                        raise zipfile.BadZipFile("a member fails its CRC check")
            elif p.suffix in (".bin", ".pt", ".pkl"):
                for _ in pickletools.genops(p.read_bytes()):
                    pass
        except SafetensorError as e:
            return p, str(e).splitlines()[0] if str(e) else "not a safetensors file"
        except (zipfile.BadZipFile, EOFError, OSError, ValueError):
            return p, "not a readable PyTorch file"
    return None


class Checkpointer:
    """Saves and restores the whole training state through the Accelerator.

    Args:
        accelerator: the run's :class:`accelerate.Accelerator`, with models, optimizers and
            schedulers prepared and extra state (``TrainState``, EMA) registered for checkpointing.
        output_dir: the run folder.
        every: save every ``every`` optimizer steps (and at the last step or on a stop).
        keep_last: complete checkpoints kept; ``0`` keeps all.
        save_model: ``save_model(path)`` writes a loadable model folder; called on the main process.
        model_dir: the name of that folder, inside each checkpoint and for the final model.
    """

    def __init__(self, accelerator, output_dir: str | Path, *, every: int, keep_last: int,
                 save_model: Callable[[Path], None] | None = None, model_dir: str = "model") -> None:
        self.accelerator = accelerator
        self.output_dir = Path(output_dir)
        self.every, self.keep_last = int(every), int(keep_last)
        self.save_model, self.model_dir = save_model, model_dir

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def start(self, config: Mapping[str, Any], resume_from: Path | None = None, overwrite: bool = False) -> None:
        """Load ``resume_from`` (from :func:`prepare_output_dir`) into the prepared objects, clear an
        old run's outputs when ``overwrite``, then write ``config.yaml`` (main process)."""
        if resume_from is not None:
            try:
                self.accelerator.load_state(str(resume_from))
            except Exception as e:  # safetensors, pickle and torch errors alike: one line, never PyTorch's advice
                raise self._load_error(Path(resume_from), e) from None
        if self.main:
            if overwrite:
                for name in (*RUN_FILES, "logs", self.model_dir):
                    target = self.output_dir / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self.accelerator.wait_for_everyone()

    def due(self, step: int, final: bool = False) -> bool:
        """Whether to save after optimizer step ``step`` (every ``every`` steps, the last, or on a stop)."""
        return final or step % self.every == 0

    def save(self, step: int) -> Path:
        """Save the state of every process at ``step``, then mark it complete and prune old ones."""
        path = self.output_dir / "checkpoints" / f"step-{step:06d}"
        if self.main and path.exists():
            shutil.rmtree(path)  # a leftover of an interrupted save
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path))
        if self.main:
            if self.save_model is not None:
                self.save_model(path / self.model_dir)
            if (self.output_dir / "config.yaml").exists():
                shutil.copyfile(self.output_dir / "config.yaml", path / "config.yaml")
        self.accelerator.wait_for_everyone()  # every process's RNG state is on disk before DONE
        if self.main:
            (path / "DONE").write_text(f"{step}\n")
            done = checkpoint_dirs(self.output_dir)  # all of this run: prepare_output_dir refused others
            for old in done[: -self.keep_last] if self.keep_last > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return path

    def save_final(self) -> Path:
        """The final model folder ``output_dir/<model_dir>`` (main process writes it)."""
        path = self.output_dir / self.model_dir
        if self.main and self.save_model is not None:
            self.save_model(path)
        self.accelerator.wait_for_everyone()
        return path

    def end_step(self, log: Any, step: int, *, final: bool, stop: bool) -> bool:
        """After optimizer step ``step``: save a checkpoint when due (always on the last step or a stop
        request) and say so on ``log`` (a :class:`~fsqtok.training.TrainLogger`). Returns whether the
        loop ends here (last step or stop); the recipe exits with ``EXIT_STOPPED`` on a stop."""
        if self.due(step, final or stop):
            log.line(f"saved checkpoint {self.save(step)}")
        if stop:
            log.line(f"interrupted at step {step}: checkpoint saved; continue with --resume")
        return final or stop

    def finish(self, log: Any, what: str, model_class: type, push_to: str | None = None,
               private: bool = False) -> Path:
        """Write the final model folder, log it, and push it with ``model_class.from_pretrained(folder)
        .push_to_hub(push_to)`` from the main process when ``push_to`` (a repo id) is given."""
        path = self.save_final()
        log.line(f"saved {what} {path}")
        if push_to and self.main:
            log.line(f"pushed to {model_class.from_pretrained(path).push_to_hub(push_to, private=private)}")
        return path

    def close(self, log: Any, code: int, what: str, model_class: type, push_to: str | None = None,
              private: bool = False) -> int:
        """The end every recipe shares: :meth:`finish` when the run ended cleanly (``code == 0``; a stopped
        or failed run leaves only its checkpoints), close ``log``, wait for every process and end training
        (trackers and the process group). Returns ``code``, the recipe's exit status."""
        if code == 0:
            self.finish(log, what, model_class, push_to, private)
        log.close()
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        return code

    def _load_error(self, path: Path, error: Exception) -> CheckpointError:
        """The one line for a checkpoint that failed to load: the unreadable file and the checkpoint
        before it when a file is corrupt, else the first line that says why the state does not fit."""
        bad = unreadable_file(path)
        if bad is not None:
            older = [p for p in checkpoint_dirs(self.output_dir) if step_of(p) < step_of(path)] if path.name[5:].isdigit() else []
            hint = f"resume from the previous one (--resume {older[-1]})" if older else "start over (--overwrite)"
            return CheckpointError(f"--resume {path}: {bad[0]} is unreadable ({bad[1]}); the checkpoint is corrupt or "
                                   f"truncated: {hint}")
        lines = [s.strip() for s in str(error).splitlines() if s.strip()]
        detail = next((s for s in lines if "mismatch" in s or "Missing" in s), lines[0] if lines else type(error).__name__)
        return CheckpointError(f"--resume {path}: the checkpoint does not fit this run ({detail})")

    def last_good(self) -> Path | None:
        """The newest complete checkpoint of this run, if any."""
        done = checkpoint_dirs(self.output_dir)
        return done[-1] if done else None
