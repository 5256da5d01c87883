"""fsqtok.shards.encoders: several encoder threads, results in order, the same bytes as one encoder."""

import threading

import numpy as np
import torch

from conftest import args_for, read_bytes, torch_threads
from fsqtok.shards.cli import main
from fsqtok.shards.encoders import encode_in_order, encoder_layout
from fsqtok.shards.writer import token_dtype


class _Probe:
    """A tokenizer whose encode records how it ran: 2 encodes must overlap to pass the barrier."""

    codebook_size = 1000

    def __init__(self, meet: int = 1) -> None:
        self.barrier = threading.Barrier(meet, timeout=10)
        self.seen = []

    def encode(self, x):
        flushed = (torch.tensor([1e-39]) * 1.0).item() == 0.0  # denormals flushed to zero in this thread
        self.seen.append((threading.current_thread().name, torch.get_num_threads(), flushed))
        self.barrier.wait()
        return x[:, 0, :1, :1].long()


def _batches(n: int):
    for b in range(n):
        x = torch.full((2, 1, 1, 1), float(b))
        items = [{"key": f"{b}-{j}", "error": None, "label": None, "meta": {}} for j in range(2)]
        yield b // 2, {"items": items, "groups": [([0, 1], x)]}


def _new_thread_count() -> int:
    """The torch thread count a thread started now gets (process-wide, unlike the calling thread's own)."""
    got = []
    t = threading.Thread(target=lambda: got.append(torch.get_num_threads()))
    t.start()
    t.join()
    return got[0]


def test_batches_come_back_in_order_from_concurrent_encoders():
    probe, before = _Probe(meet=2), torch.get_num_threads()
    drawn = []

    def counted():
        for b in _batches(6):
            drawn.append(b)
            yield b

    stream = encode_in_order(counted(), probe, torch.device("cpu"), token_dtype(1000), encoders=2)
    out = [next(stream)]
    assert len(drawn) == 3  # one more batch in flight than encoders, never the whole source
    out += list(stream)
    assert [(shard, [r["key"] for r in rows]) for shard, rows, _, _ in out] == \
        [(b // 2, [f"{b}-0", f"{b}-1"]) for b in range(6)]
    assert [int(rows[0]["tokens"][0, 0]) for _, rows, _, _ in out] == list(range(6))
    assert all(stats["encoded"] == 2 for *_, stats in out)
    assert {name for name, _, _ in probe.seen} >= {"fsqtok-encode_0", "fsqtok-encode_1"}  # both met at the barrier
    assert all(flushed for *_, flushed in probe.seen)
    assert torch.get_num_threads() == before  # the encoders' thread count does not leak out


def test_encoders_share_the_torch_threads():
    with torch_threads(4):
        assert encoder_layout(torch.device("cpu"), None) == (4, 1)
        assert encoder_layout(torch.device("cpu"), 2) == (2, 2)
        assert encoder_layout(torch.device("cpu"), 1) == (1, 4)
        assert encoder_layout(torch.device("meta"), None) == (1, 4)  # other devices: one encoder
        probe = _Probe()
        list(encode_in_order(_batches(3), probe, torch.device("cpu"), np.dtype(np.uint16), encoders=2))
        assert {threads for _, threads, _ in probe.seen} == {2}
        assert torch.get_num_threads() == 4 and _new_thread_count() == 4  # restored for later threads too


def test_closing_early_waits_for_the_running_batches():
    gate, started, finished = threading.Event(), [], []

    class Slow(_Probe):
        def encode(self, x):
            started.append(int(x[0, 0, 0, 0]))
            if int(x[0, 0, 0, 0]) > 0:
                gate.wait(10)  # later batches run until the gate opens
            finished.append(int(x[0, 0, 0, 0]))
            return super().encode(x)

    probe = Slow()
    stream = encode_in_order(_batches(50), probe, torch.device("cpu"), token_dtype(1000), encoders=2)
    next(stream)
    threading.Timer(0.3, gate.set).start()
    stream.close()
    assert sorted(finished) == sorted(started) and len(started) <= 3  # all taken were finished, no more taken
    assert not [t for t in threading.enumerate() if t.name.startswith("fsqtok-encode")]


def test_several_encoders_write_the_same_bytes(shard_env, done, tmp_path):
    out = tmp_path / "out"
    assert main(args_for(shard_env, out, "--encoders", "3")) == 0
    assert read_bytes(out) == read_bytes(done)


def test_bad_encoders_are_one_line(shard_env, tmp_path, capsys):
    assert main(args_for(shard_env, tmp_path / "a", "--encoders", "0")) == 2
    assert "--encoders must be >= 1, got 0" in capsys.readouterr().err
    assert main(args_for(shard_env, tmp_path / "b", "--encoders", "2", "--device", "cuda")) == 2
    err = capsys.readouterr().err.strip()
    assert "--encoders 2: only CPU runs encode several batches at once" in err and "\n" not in err
