"""Suite-wide settings: every test starts from the same random state, and data that Debian packages ship
comes from the committed subsets in tests/fixtures (so a fresh machine needs no package; see its README)."""

import os
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
