"""What every fsqtok command line shares: one-line argument errors and the exit-code contract.

Exit status 0 on success, 2 for bad arguments (:class:`UsageError`), 1 for bad input (any other
exception), 130 on Ctrl-C. Errors are one line on stderr; ``--debug`` re-raises them instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn, Sequence

EXIT_INPUT = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line arguments: exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one :class:`UsageError` line (the default prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def end_process_group() -> None:
    """Destroy the default ``torch.distributed`` process group, if one is up.

    Commands call this before they return: a rank that exits with its gloo group alive can
    abort in the group's destructor ("terminate called without an active exception", seen in
    about 1 of 20 two-process runs) after all its work was written, failing the launch.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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
