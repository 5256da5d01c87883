"""What every recipe's ``main`` shares: its command line, the Accelerator, and one-line errors.

    def main(argv=None) -> int:
        return run_recipe(train, argv, description=__doc__)

    if __name__ == "__main__":
        exit_process(main())

A recipe's command line is ``--config FILE [--resume [CHECKPOINT]] [--overwrite] [--debug] [key=value ...]``.
Errors a user can fix (a bad config value, missing data, a checkpoint that does not fit, a
non-finite loss) are printed as ``error: ...`` lines on stderr by one process (rank 0 of an
``accelerate launch``, where every rank meets the same error), and the exit status is 2 for bad
arguments, 1 otherwise; ``--debug`` re-raises for a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..cli_support import EXIT_INPUT, EXIT_USAGE, OneLineParser, UsageError, end_process_group
from .checkpoint import CheckpointError
from .config import RecipeConfigError
from .guards import NonFiniteLoss


RANK0_GRACE_S = 1.0


def known_errors() -> tuple[type[BaseException], ...]:
    """Errors of the run's input, met alike by every process: reported once, without a traceback."""
    from ..data import DataError
    from ..datasets.textures import SampleDataError
    from ..media.errors import MediaError

    return (RecipeConfigError, CheckpointError, NonFiniteLoss, DataError, SampleDataError, MediaError)


def recipe_args(argv: Sequence[str] | None, description: str = "") -> argparse.Namespace:
    """Parse a recipe's command line: ``config``, ``resume`` (None, "latest" or a folder),
    ``overwrite``, ``debug`` and ``overrides``.

    ``--resume`` takes an optional folder; a following ``key=value`` is an override, not a folder.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):  # `--resume max_steps=6`: an override follows, not a checkpoint folder
        if arg == "--resume" and "=" in argv[i + 1] and not Path(argv[i + 1]).exists():
            argv[i] = "--resume=latest"
    p = OneLineParser(prog=Path(sys.argv[0]).name, description=description,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="recipe YAML, e.g. recipes/configs/image/image.yaml")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from a checkpoint folder, or (no value) from the latest one in output_dir")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=100 optim.lr=3e-4")
    args = p.parse_intermixed_args(argv)
    return args


def build_accelerator(output_dir: str | Path, *, mixed_precision: str = "no", gradient_accumulation_steps: int = 1,
                      tensorboard: bool = True):
    """An Accelerator for a recipe: gradient accumulation (not synced with the data loader, so an
    optimizer step is always ``gradient_accumulation_steps`` micro-batches), schedulers stepped
    once per optimizer step whatever the process count, TensorBoard under ``output_dir/logs``."""
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

    out = Path(output_dir)
    return Accelerator(
        mixed_precision=mixed_precision,
        step_scheduler_with_optimizer=False,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=gradient_accumulation_steps,
                                                                sync_with_dataloader=False),
        log_with="tensorboard" if tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def run_recipe(body: Callable[[argparse.Namespace], int], argv: Sequence[str] | None = None,
               description: str = "") -> int:
    """Parse the command line, run ``body(args)`` and return its exit status, turning errors into
    ``error: ...`` lines (one per problem). Known errors are reported by rank 0 only; any other
    error is a bug and reported by each rank that meets it. The process group is ended on every path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return body(recipe_args(argv, description))
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        if debug:
            raise
        if _rank() == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted (a second Ctrl-C stops without saving)", file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - the contract: one line per problem, no traceback
        if debug:
            raise
        known = isinstance(e, known_errors())
        if known and _rank() != 0:
            # rank 0 reports it; the launcher stops every rank once one fails, so give rank 0 time to print
            time.sleep(RANK0_GRACE_S)
            return EXIT_INPUT
        prefix = "error: " if known else f"error (rank {_rank()}, {type(e).__name__}): "
        lines = str(e).splitlines() if known else [" ".join(str(e).split())]
        for line in lines or [type(e).__name__]:
            print(prefix + line, file=sys.stderr, flush=True)
        return EXIT_INPUT
    finally:
        end_process_group()
