"""Shared fixtures for the index-shard tests: a tiny saved image tokenizer and a folder of real PNGs."""

from pathlib import Path

import pytest

from fsqtok.data.samples import sample_images
from fsqtok.media import write_image
from fsqtok.tokenizers import ImageTokenizer

NUM_IMAGES = 14


@pytest.fixture(scope="session")
def shard_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards_env")
    tok = ImageTokenizer()
    tok.save_pretrained(root / "tok")
    other = ImageTokenizer()  # same config, different random weights
    other.save_pretrained(root / "tok_other")
    images = sample_images(NUM_IMAGES, 32, seed=3)
    for i in range(NUM_IMAGES):
        d = root / "imgs" / ("cat" if i % 2 else "dog")
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / f"{i:03d}.png", images[i])
    return {"root": root, "tok": str(root / "tok"), "tok_other": str(root / "tok_other"), "imgs": root / "imgs"}


def args_for(env, out, *extra):
    return ["-t", env["tok"], "--data", str(env["imgs"]), "-o", str(out), "--shard-size", "4", "--batch-size", "3",
            "--num-workers", "0", "--labels", "folder", "--quiet", *extra]


def read_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*")) if p.is_file()}
