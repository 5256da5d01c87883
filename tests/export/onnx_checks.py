"""The export tests' cases (a small tokenizer of every modality, real media at two sizes each) and how a
test decides that onnxruntime's indices agree with PyTorch's: equal, or different only where PyTorch's
own value lies within float rounding of a rounding boundary."""

from __future__ import annotations

import torch
from torch import Tensor

from fsqtok.data.samples import sample_audio, sample_depth, sample_images, sample_videos
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


# a mismatch is excused only where some pre-round value is this close (in grid steps) to a .5 boundary
BOUNDARY_TOL = 1e-3


@torch.no_grad()
def boundary_margin(tok, x: Tensor) -> Tensor:
    """Per token position (the layout of ``tok.encode(x)`` without the stage axis): the smallest
    distance, over channels and residual stages, of PyTorch's pre-round value from a .5 boundary."""
    x_net, ctx = tok._prepare(x)
    q = tok.quantizer
    residual_fsq = tok.config.quantizer == "rfsq"
    fsq = q.fsq if residual_fsq else q
    h = q.project_in(tok.encoder(x_net).float())
    b = fsq._bound(h, 1)  # round(b) is stage 0's grid value
    margin = (0.5 - (b - b.round()).abs()).amin(1)
    if residual_fsq:
        indices = tok._quantize(tok.encoder(x_net))
        view = (-1,) + (1,) * (h.ndim - 2)
        target = b * fsq._consts(h.device).inv_half_width.view(view)
        gain_in = q._stages(h.device).gain_in
        for s in range(1, q.num_stages):
            v = (target - q.decode_codes(indices[:, :s])) * gain_in[s].view(view)
            margin = torch.minimum(margin, (0.5 - (v - v.round()).abs()).amin(1))
    return tok._unfold_tokens(margin, ctx)


def agreement(tok, x: Tensor, got: Tensor) -> tuple[float, int]:
    """``(fraction of indices equal to tok.encode(x), mismatched positions not at a rounding boundary)``."""
    expected = tok.encode(x)
    assert got.shape == expected.shape and got.dtype == torch.int64
    equal = got == expected
    if tok.config.quantizer == "rfsq":
        position_equal = equal.all(dim=1 + tok._extra_token_axes)
    else:
        position_equal = equal
    fraction = float(equal.double().mean())
    if bool(position_equal.all()):
        return fraction, 0
    unexplained = (~position_equal) & (boundary_margin(tok, x) >= BOUNDARY_TOL)
    return fraction, int(unexplained.sum())
