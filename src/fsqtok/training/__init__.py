"""What the training recipe and scripts/evaluate.py share: config loading, weight EMA, evaluation metrics."""

from .config import Config, RecipeConfigError, load_config
from .ema import EMA

__all__ = ["Config", "EMA", "RecipeConfigError", "load_config"]
