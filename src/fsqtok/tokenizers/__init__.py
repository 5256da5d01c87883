"""Modality tokenizers: encoder + FSQ / residual-FSQ bottleneck + decoder, with Hub save/load."""

from .audio import AudioConfig, AudioTokenizer
from ..hub import CheckpointError, ConfigError
from .base import Tokenizer, load_tokenizer
from .config import TokenizerConfig, TokenizerOutput
from .cosmos import CosmosImageConfig, CosmosImageTokenizer, CosmosVideoConfig, CosmosVideoTokenizer
from .depth import DepthConfig, DepthOutput, DepthTokenizer
from .image import ImageConfig, ImageTokenizer
from .nemo_audio import NemoAudioConfig, NemoAudioTokenizer
from .video import VideoConfig, VideoTokenizer

__all__ = [
    "AudioConfig",
    "AudioTokenizer",
    "CheckpointError",
    "CosmosImageConfig",
    "CosmosImageTokenizer",
    "CosmosVideoConfig",
    "CosmosVideoTokenizer",
    "ConfigError",
    "DepthConfig",
    "DepthOutput",
    "DepthTokenizer",
    "ImageConfig",
    "ImageTokenizer",
    "NemoAudioConfig",
    "NemoAudioTokenizer",
    "Tokenizer",
    "TokenizerConfig",
    "TokenizerOutput",
    "VideoConfig",
    "VideoTokenizer",
    "load_tokenizer",
]
