"""Train the Fashion-MNIST classifier whose features score generated images.

    python scripts/train_classifier.py --output-dir runs/classifier [--data DIR] [--epochs 2] [--num-train 55000]

A LeNet-style CNN (two conv blocks, a 128-d feature layer, 10 logits) trained on the first
``--num-train`` training images (the rest of the 60,000 stay free as a validation split) and
scored on the 10,000 test images. ``scripts/evaluate_generation.py`` uses its 128-d features for
the Frechet classifier distance and precision/recall, and its logits for the class accuracy of
conditional samples. That distance is not FID: it is only comparable between runs that use the
same classifier weights (``classifier.json`` records their sha256).

Writes ``OUT/classifier.safetensors`` and ``OUT/classifier.json`` (architecture, accuracy, hash).
Exit status: 0 done, 1 bad input (e.g. no Fashion-MNIST files), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from fsqtok.data import DataError
from fsqtok.datasets.fashion_mnist import CLASSES, load_fashion_mnist, to_tensor

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
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_classifier(folder: str | Path) -> tuple[LeNet, dict]:
    """``OUT`` of this script -> (the eval-mode classifier, its metadata)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / META).is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS} + {META}; train one with scripts/train_classifier.py")
    meta = json.loads((folder / META).read_text())
    model = LeNet(tuple(meta["arch"]["channels"]), meta["arch"]["feature_dim"], meta["arch"]["num_classes"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    return model.eval(), meta


@torch.no_grad()
def accuracy(model: LeNet, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    hits = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return hits / max(1, len(x))


def train(x: Tensor, y: Tensor, epochs: int, batch_size: int, lr: float, seed: int) -> LeNet:
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", required=True)
    p.add_argument("--data", default=None, help="folder of the raw Fashion-MNIST files (default: Debian's)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--num-train", type=int, default=55000, help="first N training images; the rest is left out")
    p.add_argument("--num-test", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("epochs", "num_train", "num_test", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lr > 0:
        p.error("--lr must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images, labels = load_fashion_mnist("train", args.data)
        test_images, test_labels = load_fashion_mnist("test", args.data)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.num_train < args.batch_size:
        print(f"error: --num-train {args.num_train} is smaller than --batch-size {args.batch_size}", file=sys.stderr)
        return 2
    x, y = to_tensor(images[:args.num_train], 1), torch.from_numpy(labels[:args.num_train])
    xt, yt = to_tensor(test_images[:args.num_test], 1), torch.from_numpy(test_labels[:args.num_test])
    t0 = time.perf_counter()
    model = train(x, y, args.epochs, args.batch_size, args.lr, args.seed)
    seconds = time.perf_counter() - t0
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / WEIGHTS)
    meta = {"arch": model.arch, "classes": list(CLASSES), "num_train": len(x), "epochs": args.epochs,
            "seed": args.seed, "train_seconds": round(seconds, 1), "test_items": len(xt),
            "test_accuracy": accuracy(model, xt, yt), "weights_sha256": weights_sha256(model)}
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"classifier: test accuracy {meta['test_accuracy']:.4f} on {len(xt)} images after {args.epochs} epoch(s) "
          f"({seconds:.0f} s); wrote {out / WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
