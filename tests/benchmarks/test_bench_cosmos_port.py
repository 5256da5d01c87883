"""benchmarks/bench_cosmos_port.py: without the reference code it skips in one line (and exits 0)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_cosmos_port  # noqa: E402


def test_skips_in_one_line_without_the_reference(capsys):
    assert bench_cosmos_port.main([]) == 0
    assert capsys.readouterr().out == ("skipped: pass --reference PATH (a Cosmos-Tokenizer checkout; the reference "
                                       "code is not part of fsqtok)\n")
