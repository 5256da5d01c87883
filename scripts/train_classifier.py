"""Train the Fashion-MNIST classifier whose features score generated images.

    python scripts/train_classifier.py --output-dir runs/classifier [--data DIR] [--epochs 2] [--num-train 55000]

The classifier of :mod:`fsqtok.metrics.classifier` (a LeNet-style CNN), trained on the first
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
import sys
import time

import torch

from fsqtok.data import DataError
from fsqtok.datasets.fashion_mnist import CLASSES, load_fashion_mnist, to_tensor
from fsqtok.metrics.classifier import WEIGHTS, accuracy, save_classifier, train_classifier


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
    model = train_classifier(x, y, args.epochs, args.batch_size, args.lr, args.seed)
    seconds = time.perf_counter() - t0
    meta = save_classifier(model, args.output_dir, {
        "classes": list(CLASSES), "num_train": len(x), "epochs": args.epochs, "seed": args.seed,
        "train_seconds": round(seconds, 1), "test_items": len(xt), "test_accuracy": accuracy(model, xt, yt)})
    print(f"classifier: test accuracy {meta['test_accuracy']:.4f} on {len(xt)} images after {args.epochs} epoch(s) "
          f"({seconds:.0f} s); wrote {args.output_dir}/{WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
