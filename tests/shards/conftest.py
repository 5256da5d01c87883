"""Shared fixtures for the index-shard tests: a tiny saved image tokenizer, a folder of real PNGs
and one finished output of them (``done``), which other runs are compared with byte for byte."""

import contextlib
from pathlib import Path

import pytest
import torch

from fsqtok.datasets.samples import sample_images
from fsqtok.media import write_image
from fsqtok.tokenizers import ImageTokenizer

NUM_IMAGES = 14


@contextlib.contextmanager
def torch_threads(n: int):
    """``n`` torch intra-op threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine a 2-thread encoder stalls ~100x whenever one of
    its threads is preempted; these tests check bytes and indices, which do not depend on threads."""
    return torch_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def shard_env(tmp_path_factory):
    with one_torch_thread():
        return _make_env(tmp_path_factory)


def _make_env(tmp_path_factory):
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


@pytest.fixture(scope="session")
def done(shard_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "out"
    from fsqtok.shards.cli import main

    with one_torch_thread():
        assert main(args_for(shard_env, out, "--num-workers", "2")) == 0  # workers do not change the bytes
    return out


def args_for(env, out, *extra):
    return ["-t", env["tok"], "--data", str(env["imgs"]), "-o", str(out), "--shard-size", "4", "--batch-size", "3",
            "--num-workers", "0", "--labels", "folder", "--quiet", *extra]


def read_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*")) if p.is_file()}
