"""benchmarks/bench_cosmos_port.py: without the reference code it skips in one line (and exits 0)."""

from __future__ import annotations

from benchmarks import bench_cosmos_port


def test_skips_in_one_line_without_the_reference(capsys):
    assert bench_cosmos_port.main([]) == 0
    assert capsys.readouterr().out == ("skipped: pass --reference PATH (a Cosmos-Tokenizer checkout; the reference "
                                       "code is not part of fsqtok)\n")
