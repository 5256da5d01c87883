"""What every fsqtok command line shares: one-line argument errors and the exit-code contract.

Exit status 0 on success, 2 for bad arguments (:class:`UsageError`), 1 for bad input (any other
exception), 130 on Ctrl-C. Errors are one line on stderr; ``--debug`` re-raises them instead.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

EXIT_INPUT = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line arguments: exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one :class:`UsageError` line (the default prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def finite_float(minimum: float | None = None, inclusive: bool = True) -> Callable[[str], float]:
    """argparse type: a finite float, optionally ``>= minimum`` (``> minimum`` with ``inclusive=False``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if minimum is not None and (value < minimum or (not inclusive and value == minimum)):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {minimum:g}, got {text}")
        return value

    return parse


def model_source(text: str) -> str:
    """argparse type for a saved model: an existing folder, or a Hub repo id ``org/name``.

    A file, or a path that looks local (see :func:`fsqtok.hub.looks_local`) and does not exist,
    is an argument error at once, before any work and without trying the Hub.
    """
    from .hub import CONFIG_NAME, looks_local

    if os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: a file; pass the folder that holds {CONFIG_NAME}")
    if not os.path.exists(text) and looks_local(text):
        raise argparse.ArgumentTypeError(f"{text}: no such folder, and not a Hub repo id of the form org/name")
    return text


def check_output(output: str | os.PathLike, inputs: Sequence[str | os.PathLike], flag: str = "-o") -> None:
    """Refuse, before any work, an output that is one of the command's ``inputs`` (writing it would replace
    the input): a :class:`UsageError` line naming both. The same file by another path (``./x``, a link) counts."""
    out = os.path.realpath(output)
    for given in inputs:
        same = os.path.samefile(output, given) if os.path.exists(output) and os.path.exists(given) else \
            out == os.path.realpath(given)
        if same:
            raise UsageError(f"{flag} {output}: is the input {given}; writing it would replace the input, "
                             "so give another output file")


def check_device(text: str) -> str:
    """argparse type for ``--device``: a torch device that exists on this machine (cpu, cuda[:i], mps)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu, cuda, cuda:1 or mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: unsupported device type; use cpu, cuda or mps")
    return text


def end_process_group() -> None:
    """Destroy the default ``torch.distributed`` process group, if one is up (commands call this
    before they return, so the group's collectives are shut down while the program still runs)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a command's process with ``code``: what every entry point's ``__main__`` calls.

    In a rank of a multi-process launch (``WORLD_SIZE`` > 1) the process ends with ``os._exit``
    once stdout and stderr are flushed, skipping the interpreter's teardown. There, gloo's worker
    threads can outlive ``destroy_process_group`` (seen after ``gather_for_metrics``), and the
    teardown then aborts the rank ("terminate called without an active exception", SIGABRT) in
    about 1 of 50 runs, after every output was written, so the launcher reports a failed run.
    Every file a command writes is closed before it returns, so skipping the teardown loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        end_process_group()
        os._exit(code)
    sys.exit(code)


def run_command(body: Callable[[list[str]], int], argv: Sequence[str] | None,
                interrupted: str = "interrupted") -> int:
    """Run ``body(argv)`` under the exit-code contract; ``interrupted`` is the Ctrl-C message.
    The process group a distributed run set up is ended on every path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return body(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the contract: one line, no traceback
        if debug:
            raise
        print(f"error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        end_process_group()


def check_output_folder(path: str, flag: str, *, empty: bool = False) -> None:
    """Before any work: an output folder argument may not be a file, nor lie under one, and with
    ``empty`` it must be absent or empty (nothing of another run is mixed in or written over).
    Raises :class:`UsageError` naming ``flag``."""
    p = Path(path)
    first = next((q for q in (p, *p.parents) if q.exists()), None)
    if first is not None and not first.is_dir():
        where = "is a file" if first == p else f"lies under the file {first}"
        raise UsageError(f"{flag} {path}: {where}; give a folder")
    if empty and p.is_dir() and any(p.iterdir()):
        raise UsageError(f"{flag} {path}: not empty; give a new or empty folder")
