"""What every training recipe shares; a recipe is a short script whose loop stays in view.

* :mod:`.config`: YAML + ``key=value`` overrides checked against defaults; :class:`ConfigChecks` for ranges.
* :mod:`.schedule`: warmup + cosine / linear / constant learning rate per optimizer step.
* :mod:`.checkpoint`: the run folder, ``save_state`` checkpoints every N steps, keep K, exact resume.
* :mod:`.logging`: progress bar, plain lines, ``metrics.jsonl``, TensorBoard.
* :mod:`.guards`: Ctrl-C / SIGTERM and non-finite losses, agreed by every process in one all-reduce.
* :mod:`.runner`: the command line, the Accelerator, one-line errors.
* :mod:`.ema`: an exponential moving average of the weights.
* :mod:`.loop`: the loop skeleton: the batches from the exact resume position, one optimizer step.
"""

from .checkpoint import Checkpointer, CheckpointError, TrainState, checkpoint_dirs, prepare_output_dir
from .config import Config, ConfigChecks, RecipeConfigError, load_config
from .ema import EMA
from .guards import EXIT_STOPPED, NonFiniteLoss, StepFlags, StopRequest
from .logging import TrainLogger, fmt
from .loop import count_step, every_or_final, optimizer_step, resumed_batches
from .runner import build_accelerator, recipe_args, run_recipe
from .schedule import build_scheduler, lr_multiplier

__all__ = [
    "Checkpointer", "CheckpointError", "Config", "ConfigChecks", "EMA", "EXIT_STOPPED", "NonFiniteLoss",
    "RecipeConfigError", "StepFlags", "StopRequest", "TrainLogger", "TrainState", "build_accelerator",
    "build_scheduler", "checkpoint_dirs", "count_step", "every_or_final", "fmt", "load_config", "lr_multiplier",
    "optimizer_step", "prepare_output_dir", "recipe_args", "resumed_batches", "run_recipe",
]
