"""The loop skeleton every recipe shares: where the data resumes, one optimizer step, and its count.

A recipe keeps its own loop body (forward, loss terms, evaluation, extra models) and takes these three::

    with StopRequest() as stop:
        for batch in resumed_batches(accelerator, train_dl, state, cfg.max_steps, dataset=train_set):
            with accelerator.accumulate(model):
                loss = ...
                flags = StepFlags(...).agree(accelerator)
                terms.update(optimizer_step(accelerator, loss, model.parameters(), optimizer, scheduler, oc.grad_clip))
            log.add(**terms, loss=loss)
            if not accelerator.sync_gradients:
                continue
            final = count_step(state, cfg.max_steps, log, loss, scheduler, ema, raw)
            ...  # evaluation, media
            if ckpt.end_step(log, state.step, final=final, stop=flags.stop):
                break

An optimizer step is always ``accelerator.gradient_accumulation_steps`` micro-batches
(:func:`~fsqtok.training.build_accelerator` does not sync accumulation with the loader), and the
loader's order depends only on ``(seed, epoch)`` (:class:`~fsqtok.data.EpochSampler`), so the
micro-batches a run has consumed are exactly ``state.step * accumulation`` and a resumed run
continues with the very next batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from torch import Tensor, nn

from .checkpoint import TrainState
from .ema import EMA
from .logging import TrainLogger


def resumed_batches(accelerator, loader, state: TrainState, max_steps: int, dataset: Any = None) -> Iterator[Any]:
    """The training batches from the run's position on, epoch after epoch, until ``max_steps``.

    The position is read from ``state.step`` when the iteration starts (after ``Checkpointer.start``
    has loaded a checkpoint): ``state.step * accelerator.gradient_accumulation_steps`` micro-batches
    were consumed, which is a whole number of epochs of ``len(loader)`` batches plus a remainder
    that is skipped. Each epoch first calls ``loader.set_epoch(epoch)`` (the prepared loader passes
    it to the sampler) and ``dataset.set_epoch(epoch)`` when ``dataset`` has it (e.g. random crops
    that depend on the epoch).

    Args:
        accelerator: the run's Accelerator (its gradient accumulation gives micro-batches per step).
        loader: the prepared training loader (``accelerator.prepare``), at least one batch long.
        state: the run's step counter; the caller increments it after each optimizer step.
        max_steps: the last optimizer step.
        dataset: the loader's dataset, when it needs ``set_epoch`` itself (the loader only tells the sampler).

    Yields:
        the loader's batches, as the loader makes them. Iteration ends once ``state.step >= max_steps``
        (checked before each epoch and after each batch), so a finished run yields nothing; a caller
        that stops early (checkpoint on a stop request) just ``break``s.
    """
    batches_per_epoch = len(loader)
    if batches_per_epoch == 0:
        raise ValueError("resumed_batches: the training loader has no batches (fewer items than one batch?)")
    epoch, skip = divmod(state.step * accelerator.gradient_accumulation_steps, batches_per_epoch)
    while state.step < max_steps:
        loader.set_epoch(epoch)
        if dataset is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for batch in accelerator.skip_first_batches(loader, skip) if skip else loader:
            yield batch
            if state.step >= max_steps:
                return
        epoch, skip = epoch + 1, 0


def optimizer_step(accelerator, loss: Tensor, params: Iterable[nn.Parameter], optimizer, scheduler,
                   grad_clip: float) -> dict[str, Tensor]:
    """Backward of one micro-batch's ``loss`` and, on the last micro-batch of a step, the step itself.

    Call it inside ``accelerator.accumulate(...)``. ``loss`` is back-propagated; when the gradients
    are synchronized (the step's last micro-batch) and ``grad_clip > 0`` the gradients of ``params``
    are clipped to that total norm; the prepared optimizer steps and zeroes its gradients (both no-ops
    on the other micro-batches) and ``scheduler`` steps once per optimizer step.

    Args:
        accelerator: the run's Accelerator (built by ``build_accelerator``: the scheduler is stepped here,
            not with the optimizer).
        loss: a scalar tensor, this micro-batch's loss.
        params: the parameters to clip (e.g. ``model.parameters()``); read only when clipping.
        optimizer, scheduler: the prepared optimizer and learning-rate scheduler.
        grad_clip: the largest total gradient norm; 0 disables clipping.

    Returns:
        the terms to log: ``{"grad_norm": norm}`` (a 0-dim tensor, the norm before clipping) when it
        clipped, else ``{}``.
    """
    accelerator.backward(loss)
    terms = {}
    if accelerator.sync_gradients and grad_clip > 0:
        terms["grad_norm"] = accelerator.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    if accelerator.sync_gradients:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return terms


def count_step(state: TrainState, max_steps: int, log: TrainLogger, loss: Tensor, scheduler, ema: EMA | None = None,
               model: nn.Module | None = None, **flush_extra: float) -> bool:
    """Count one finished optimizer step (call it on the step's last micro-batch, after :func:`optimizer_step`).

    ``state.step`` goes up by one, the weight ``ema`` (if any) follows ``model``, the logger's bar moves
    (``loss`` beside it), and when the logged interval is due (every ``log.every`` steps, and at
    ``max_steps``) it is flushed with the scheduler's learning rate and ``flush_extra`` (e.g. a count of
    skipped files). Returns whether this was the run's last step.
    """
    state.step += 1
    if ema is not None:
        ema.update(model)
    log.step(state.step, loss=loss.item())
    final = state.step == max_steps
    if log.due(state.step, final):
        log.flush(state.step, lr=scheduler.get_last_lr()[0], **flush_extra)
    return final


def every_or_final(every: int, step: int, final: bool) -> bool:
    """Whether a periodic task (evaluation, media, samples) runs after ``step``: every ``every`` steps
    (``0`` turns it off) and always at the run's last step."""
    return final or (every > 0 and step % every == 0)
