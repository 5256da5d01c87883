"""UViM on fsqtok: :mod:`~fsqtok.generative.uvim.stage1` (restricted oracle + base model),
:mod:`~fsqtok.generative.uvim.lm` (stage II code LM, :class:`UViMPipeline`), :mod:`~fsqtok.generative.uvim.tasks`
(depth, colorization, panoptic), :mod:`~fsqtok.generative.uvim.evaluation` and
:mod:`~fsqtok.generative.uvim.metrics` (colorization PSNR and Fréchet distance)."""

from .lm import UViMLM, UViMLMConfig, UViMPipeline
from .stage1 import UViMConfig, UViMStage1

__all__ = ["UViMConfig", "UViMLM", "UViMLMConfig", "UViMPipeline", "UViMStage1"]
