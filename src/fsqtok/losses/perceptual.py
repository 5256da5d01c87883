"""Optional LPIPS-style perceptual loss on VGG16 features.

Used only when VGG16 weights are already on disk (a given path, or torchvision's cache
``<torch hub dir>/checkpoints/vgg16-*.pth``). Nothing is ever downloaded: without weights
:func:`maybe_perceptual_loss` returns ``None`` and warns once per process.

The loss follows LPIPS (Zhang et al. 2018): LPIPS input scaling, VGG16 relu1_2 .. relu5_3
features, unit-normalised over channels, squared differences, spatial mean, summed over
layers with uniform weights (LPIPS' learned linear heads are not available offline).
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["PerceptualLoss", "maybe_perceptual_loss", "find_vgg16_weights"]

#: indices after which torchvision's vgg16().features yields relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_VGG16_TAPS = (3, 8, 15, 22, 29)
_warned = False


def find_vgg16_weights(weights_path: str | os.PathLike | None = None) -> Path | None:
    """The local VGG16 weight file to use, or ``None``. Never downloads."""
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        return p if p.is_file() else None
    try:
        hub = torch.hub.get_dir()
    except Exception:  # pragma: no cover - defensive
        hub = os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub")
    hits = sorted(glob.glob(os.path.join(hub, "checkpoints", "vgg16-*.pth")))
    return Path(hits[0]) if hits else None


class PerceptualLoss(nn.Module):
    """LPIPS-style distance of images ``(B, 3, H, W)`` in [-1, 1]; ``forward`` returns ``(B,)``.

    The VGG16 is frozen (``requires_grad=False``, eval mode); gradients flow to the inputs.
    Raises ``FileNotFoundError`` when no weights are found: check :meth:`available` or use
    :func:`maybe_perceptual_loss`.
    """

    def __init__(self, weights_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        path = find_vgg16_weights(weights_path)
        if path is None:
            raise FileNotFoundError(
                f"no local VGG16 weights ({weights_path or 'torch hub cache checkpoints/vgg16-*.pth'}); not downloading"
            )
        from torchvision.models import vgg16

        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        net = vgg16(weights=None).features[: _VGG16_TAPS[-1] + 1]
        net.load_state_dict({k: v for k, v in features.items() if int(k.split(".")[0]) <= _VGG16_TAPS[-1]})
        self.net = net.eval().requires_grad_(False)
        self.weights_path = str(path)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def available(weights_path: str | os.PathLike | None = None) -> bool:
        return find_vgg16_weights(weights_path) is not None

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.net.eval()  # always frozen
        return self

    def _features(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        feats = []
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i in _VGG16_TAPS:
                feats.append(x)
        return feats

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        fx, fy = self._features(x), self._features(y)
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        for a, b in zip(fx, fy):
            a, b = a.float(), b.float()
            a = a / (a.square().sum(1, keepdim=True) + 1e-10).sqrt()
            b = b / (b.square().sum(1, keepdim=True) + 1e-10).sqrt()
            total = total + (a - b).square().sum(1).mean((1, 2))
        return total


def maybe_perceptual_loss(weights_path: str | os.PathLike | None = None) -> PerceptualLoss | None:
    """A :class:`PerceptualLoss` if VGG16 weights are on disk, else ``None`` (one warning per process)."""
    global _warned
    if PerceptualLoss.available(weights_path):
        return PerceptualLoss(weights_path)
    if not _warned:
        _warned = True
        where = weights_path or os.path.join(torch.hub.get_dir(), "checkpoints", "vgg16-*.pth")
        warnings.warn(
            f"perceptual loss disabled: no VGG16 weights at {where} (fsqtok never downloads them)",
            RuntimeWarning,
            stacklevel=2,
        )
    return None
