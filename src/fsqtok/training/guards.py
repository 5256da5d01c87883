"""What stops a run cleanly: Ctrl-C / SIGTERM, a non-finite loss, too many broken files.

Every process must stop at the same step, so each step's local facts travel in one all-reduce
(:meth:`StepFlags.agree`) and every rank acts on the sums::

    with StopRequest() as stop:
        for batch in loader:
            ...
            flags = StepFlags(non_finite=not torch.isfinite(loss).item(), stop=stop.requested,
                              failed_files=batch["failed"]).agree(accelerator)
            if flags.non_finite:
                raise NonFiniteLoss(step + 1, terms, checkpointer.last_good())
            ...
            if flags.stop: save a checkpoint, exit 130
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import torch

EXIT_STOPPED = 130  # the shell's code for a run ended by Ctrl-C


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run stops without saving; the last good checkpoint is kept."""

    def __init__(self, step: int, terms: Mapping[str, float | torch.Tensor], last_good: Path | None) -> None:
        values = " ".join(f"{k}={float(torch.as_tensor(v).detach()):.4g}" for k, v in terms.items())
        super().__init__(f"non-finite loss at step {step} ({values}); stopped without saving; "
                         f"last good checkpoint: {last_good if last_good is not None else 'none'}")
        self.step, self.last_good = step, last_good


@dataclasses.dataclass
class StepFlags:
    """One step's facts that every process must agree on.

    Attributes:
        non_finite: the loss of this process is NaN or infinite (after :meth:`agree`: on any process).
        stop: a stop was requested here (after :meth:`agree`: on any process).
        failed_files: files this process could not decode (after :meth:`agree`: the sum).
    """

    non_finite: bool = False
    stop: bool = False
    failed_files: int = 0

    def agree(self, accelerator) -> StepFlags:
        """Sum the flags of every process with one all-reduce; every rank gets the same answer."""
        local = torch.tensor([float(self.non_finite), float(self.stop), float(self.failed_files)],
                             device=accelerator.device)
        total = accelerator.reduce(local, "sum").tolist()
        return StepFlags(non_finite=total[0] > 0, stop=total[1] > 0, failed_files=int(total[2]))


class StopRequest:
    """While active, the first Ctrl-C (SIGINT) or SIGTERM only sets :attr:`requested`, so the loop can
    finish its step and save; a second Ctrl-C raises ``KeyboardInterrupt`` at once. The previous
    handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> StopRequest:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
