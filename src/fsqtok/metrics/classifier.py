"""The Fashion-MNIST classifier whose features give the Fréchet classifier distance (FCD).

A LeNet-style CNN (two conv blocks, a 128-d feature layer, 10 logits), trained by
``scripts/train_classifier.py``. :func:`fsqtok.metrics.generation.generation_report` uses its
128-d features for the Fréchet classifier distance and precision/recall, and its logits for the
class accuracy of conditional samples. That distance is not FID: it is only comparable between
runs that use the same classifier weights (``classifier.json`` records their sha256).

A saved classifier is a folder: ``classifier.safetensors`` and ``classifier.json`` (architecture,
accuracy, hash).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..files import atomic_path, atomic_write_text
from .frechet import ImageFeatures

WEIGHTS, META = "classifier.safetensors", "classifier.json"


class LeNet(nn.Module):
    """Grey 28x28 images in [-1, 1] ``(B, 1, 28, 28)`` (RGB ``(B, 3, 28, 28)`` is averaged to grey)
    -> logits ``(B, num_classes)``; :meth:`features` gives the ``(B, feature_dim)`` layer before them."""

    def __init__(self, channels: tuple[int, int] = (16, 32), feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.arch = {"channels": [c1, c2], "feature_dim": feature_dim, "num_classes": num_classes}
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 49, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    @staticmethod
    def _grey(x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[-2:] != (28, 28):
            raise ValueError(f"classifier input must be (B, 1 or 3, 28, 28), got {tuple(x.shape)}")
        return x.mean(1, keepdim=True) if x.shape[1] == 3 else x

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(self._grey(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the sorted state dict (names and raw bytes): the identity that makes two FCDs comparable."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_classifier(model: LeNet, folder: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``folder/classifier.safetensors`` and ``classifier.json`` (``meta`` + arch + hash); returns that json."""
    from safetensors.torch import save_file

    folder = Path(folder)
    meta = {"arch": model.arch, **meta, "weights_sha256": weights_sha256(model)}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_text(folder / META, json.dumps(meta, indent=2) + "\n")
    return meta


def load_classifier(folder: str | Path) -> tuple[LeNet, dict]:
    """A folder of :func:`save_classifier` -> (the eval-mode classifier, its metadata); ``FileNotFoundError``
    when missing, ``ValueError`` (one line naming the file) when corrupt or of another architecture."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / META).is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS} + {META}; train one with scripts/train_classifier.py")
    try:
        meta = json.loads((folder / META).read_text())
        model = LeNet(tuple(meta["arch"]["channels"]), meta["arch"]["feature_dim"], meta["arch"]["num_classes"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder / META}: not this script's metadata ({type(e).__name__}: {e}); "
                         "train the classifier again with scripts/train_classifier.py") from None
    try:
        model.load_state_dict(load_file(folder / WEIGHTS))
    except (SafetensorError, RuntimeError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{folder / WEIGHTS}: unreadable or not this classifier's weights ({detail}); "
                         "train the classifier again with scripts/train_classifier.py") from None
    return model.eval(), meta


@torch.no_grad()
def accuracy(model: LeNet, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on images ``x (N, 1|3, 28, 28)`` with labels ``y (N,)``."""
    model.eval()
    hits = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return hits / max(1, len(x))


def train_classifier(x: Tensor, y: Tensor, epochs: int, batch_size: int, lr: float, seed: int) -> LeNet:
    """Adam with a cosine learning rate over ``epochs`` passes of ``(x (N, 1, 28, 28), y (N,))``."""
    torch.manual_seed(seed)
    model = LeNet()
    steps = epochs * (len(x) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(len(x) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


class _Penultimate(nn.Module):
    def __init__(self, classifier: LeNet) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x)


def classifier_features(classifier: LeNet) -> ImageFeatures:
    """Images ``(B, 3, 28, 28)`` in [-1, 1] -> the classifier's ``(B, 128)`` features."""
    return ImageFeatures(_Penultimate(classifier), classifier.arch["feature_dim"])
