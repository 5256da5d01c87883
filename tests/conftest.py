"""Suite-wide settings: every test starts from the same random state, and data that Debian packages ship
comes from the committed subsets in tests/fixtures (so a fresh machine needs no package; see its README)."""

import os
import struct
import zlib
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# set for the whole session (subprocesses such as `accelerate launch` inherit them), whatever the machine has
os.environ["FSQTOK_FASHION_MNIST"] = str(FIXTURES / "fashion_mnist")
os.environ["FSQTOK_CASTEL_DIR"] = str(FIXTURES / "castel")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


def _png_declaring(width: int, height: int) -> bytes:
    """A ~70-byte 1-bit PNG whose header declares ``width`` x ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunk = lambda tag, body: struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.fixture
def png_declaring():
    """``png_declaring(width, height)``: the bytes of a tiny PNG whose header declares that size (a pixel bomb)."""
    return _png_declaring
