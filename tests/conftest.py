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


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> Path:
    """The Hugging Face Hub faked by a local store (no network): ``push_to_hub`` copies the folder it uploads
    to ``store / repo_id`` and fsqtok's downloads read from there. Returns the store."""
    import shutil

    import huggingface_hub.hub_mixin as hub_mixin

    from fsqtok import hub

    store = tmp_path / "fake_hub"

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            shutil.copytree(folder_path, store / repo_id)
            return f"https://huggingface.co/{repo_id}/commit/0"

    def download(repo_id, filename, subfolder=None, **kwargs):
        path = store / repo_id / (subfolder or "") / filename
        if not path.is_file():
            raise AssertionError(f"asked the Hub for {repo_id}:{subfolder}/{filename}")
        return str(path)

    monkeypatch.setattr(hub_mixin, "HfApi", FakeApi)
    monkeypatch.setattr(hub, "hf_hub_download", download)
    return store
