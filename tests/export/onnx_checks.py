"""The export tests' cases (a small tokenizer of every modality, real media at two sizes each); how a test
decides that onnxruntime's indices agree with PyTorch's is :mod:`fsqtok.export.agreement`."""

from __future__ import annotations

import torch

from fsqtok.datasets.samples import sample_audio, sample_depth, sample_images, sample_videos
from fsqtok.tokenizers import (AudioConfig, AudioTokenizer, DepthConfig, DepthTokenizer, ImageConfig, ImageTokenizer,
                               VideoConfig, VideoTokenizer)

_AUDIO = dict(base_channels=4, strides=(2, 4), dilations=(1,))
# name -> (tokenizer, stages to export (None: all)); one downsampling level each, to keep tracing short
CASES = {
    "image": (lambda: ImageTokenizer(ImageConfig(base_channels=8, channel_mult=(1, 2))), None),
    "depth": (lambda: DepthTokenizer(DepthConfig(base_channels=8, channel_mult=(1, 2), mid_attention=False)), None),
    "audio": (lambda: AudioTokenizer(AudioConfig(**_AUDIO)), None),  # mono mix, residual FSQ, all 4 stages
    "audio_independent": (lambda: AudioTokenizer(AudioConfig(**_AUDIO, channels="independent", num_stages=3)), 2),
    "video": (lambda: VideoTokenizer(VideoConfig(base_channels=4, channel_mult=(1, 2), mid_attention=True,
                                                 temporal_downsample=(True,))), None),
}


def _speech(n: int, channels: int, samples: int, seed: int) -> torch.Tensor:
    clips = sample_audio(n * channels, seconds=samples / 16000 + 0.01, seed=seed)[..., :samples]
    return clips.reshape(n, channels, samples)


def _depth(n: int, size: int, crop: tuple[int, int], seed: int) -> torch.Tensor:
    depth = sample_depth(n, size=size, seed=seed)[..., : crop[0], : crop[1]].clone()
    depth[:, :, :3, :5] = 0.0  # invalid pixels, as a sensor gives them
    depth[:, :, -2:, :4] = float("nan")
    return depth


def media(name: str) -> list[torch.Tensor]:
    """Real media for case ``name`` at two sizes, each with an axis that is not a multiple of the compression."""
    kind = name.split("_")[0]
    if kind == "image":
        return [sample_images(2, size=64, seed=1)[..., :37, :50], sample_images(1, size=64, split="val")[..., :61, :45]]
    if kind == "depth":
        return [_depth(2, 48, (41, 37), 1), _depth(1, 64, (63, 53), 2)]
    if kind == "audio":
        return [_speech(2, 2, 8000 + 13, 1), _speech(1, 1, 4803, 2)]  # hop 8
    return [sample_videos(1, frames=6, size=32, seed=1)[..., :27, :30],
            sample_videos(2, frames=4, size=24, seed=2)[..., :23, :]]
