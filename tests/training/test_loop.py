"""The shared loop skeleton: the exact resume position across epochs and accumulation, the stop at
``max_steps``, the dataset's epoch, and one optimizer step (clipping, accumulation, scheduler)."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler, DataLoader, Dataset

from fsqtok.data import EpochSampler
from fsqtok.training import EMA, TrainLogger, TrainState, count_step, every_or_final, optimizer_step, resumed_batches

N, BATCH, SEED = 10, 2, 3  # 5 batches an epoch


class Items(Dataset):
    """Item ``i`` is ``i``; records the epoch it was told when each item is read (random crops use it then)."""

    def __init__(self, n: int = N) -> None:
        self.n, self.epoch, self.read_in = n, None, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        self.read_in.append(self.epoch)
        return i

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def expected_stream(epochs: int) -> list[list[int]]:
    """The batches of ``epochs`` uninterrupted epochs, straight from the sampler's (seed, epoch) order."""
    out = []
    for epoch in range(epochs):
        sampler = EpochSampler(N, SEED)
        sampler.set_epoch(epoch)
        order = list(sampler)
        out += [order[i:i + BATCH] for i in range(0, N - N % BATCH, BATCH)]
    return out


def setup(make_accelerator, tmp_path, accum: int = 1, n: int = N, rank_shaped: bool = False):
    """A prepared loader as a recipe makes it; ``rank_shaped``: as one rank of a multi-process run sees it
    (a sharded batch sampler, for which Accelerate tells only the sampler the epoch, not the dataset)."""
    acc = make_accelerator(tmp_path, gradient_accumulation_steps=accum)
    data = Items(n)
    sampler = EpochSampler(n, SEED)
    if rank_shaped:
        batches = BatchSamplerShard(BatchSampler(sampler, BATCH, drop_last=True), num_processes=1, process_index=0)
        loader = acc.prepare(DataLoader(data, batch_sampler=batches))
    else:
        loader = acc.prepare(DataLoader(data, batch_size=BATCH, sampler=sampler, drop_last=True))
    return acc, data, sampler, loader


def train(acc, loader, state: TrainState, max_steps: int, dataset=None, stop_at: int | None = None) -> list[list[int]]:
    """A recipe's loop without a model: count an optimizer step on each synchronized micro-batch."""
    seen = []
    for batch in resumed_batches(acc, loader, state, max_steps, dataset=dataset):
        with acc.accumulate():
            seen.append(batch.tolist())
        if acc.sync_gradients:
            state.step += 1
            if state.step == stop_at:
                break
    return seen


def test_resume_mid_epoch_starts_at_the_next_batch_of_the_right_epoch(make_accelerator, tmp_path):
    acc, _, sampler, loader = setup(make_accelerator, tmp_path)
    state = TrainState()
    state.step = 7  # 7 batches done: epoch 0 (5) and 2 of epoch 1
    first = next(iter(resumed_batches(acc, loader, state, max_steps=100)))
    assert sampler.epoch == 1
    assert first.tolist() == expected_stream(2)[7]  # epoch 1's third batch


@pytest.mark.parametrize("accum", [1, 2])
@pytest.mark.parametrize("split", [1, 3, 5, 6, 7])
def test_a_resumed_run_sees_exactly_the_batches_an_uninterrupted_one_does(make_accelerator, tmp_path, accum, split):
    max_steps = 8  # 8 * accum batches: 1.6 or 3.2 epochs
    acc, _, _, loader = setup(make_accelerator, tmp_path, accum)
    whole = train(acc, loader, TrainState(), max_steps)
    assert whole == expected_stream(4)[:max_steps * accum]  # and no batch after the last step

    acc, _, _, loader = setup(make_accelerator, tmp_path, accum)
    state = TrainState()
    first = train(acc, loader, state, max_steps, stop_at=split)  # a stop request after `split` steps
    assert state.step == split and len(first) == split * accum
    acc, _, _, loader = setup(make_accelerator, tmp_path, accum)  # a fresh process resumes from the step alone
    assert first + train(acc, loader, state, max_steps) == whole
    assert state.step == max_steps


def test_a_finished_run_yields_nothing(make_accelerator, tmp_path):
    acc, data, sampler, loader = setup(make_accelerator, tmp_path)
    state = TrainState()
    state.step = 4
    sampler.set_epoch(-1)
    assert list(resumed_batches(acc, loader, state, max_steps=4, dataset=data)) == []
    assert sampler.epoch == -1 and data.epoch is None and data.read_in == []  # not even an epoch started


def test_iteration_ends_after_the_last_step_without_a_break(make_accelerator, tmp_path):
    acc, _, _, loader = setup(make_accelerator, tmp_path)
    state = TrainState()
    seen = []
    for batch in resumed_batches(acc, loader, state, max_steps=3):  # stops mid-epoch
        seen.append(batch.tolist())
        state.step += 1
    assert seen == expected_stream(1)[:3]


def test_the_dataset_is_told_each_epoch(make_accelerator, tmp_path):
    acc, data, sampler, loader = setup(make_accelerator, tmp_path, rank_shaped=True)
    state = TrainState()
    state.step = 7
    assert train(acc, loader, state, max_steps=16, dataset=data) == expected_stream(4)[7:16]
    epochs = [1] * 3 + [2] * 5 + [3]  # of batches 7..15
    assert data.read_in[:BATCH * len(epochs)] == [e for e in epochs for _ in range(BATCH)]
    assert sampler.epoch == 3


def test_without_a_dataset_only_the_loader_is_told(make_accelerator, tmp_path):
    acc, data, sampler, loader = setup(make_accelerator, tmp_path, rank_shaped=True)
    assert train(acc, loader, TrainState(), max_steps=6) == expected_stream(2)[:6]
    assert set(data.read_in) == {None} and sampler.epoch == 1


def test_an_empty_loader_is_one_clear_error(make_accelerator, tmp_path):
    acc, _, _, loader = setup(make_accelerator, tmp_path, n=1)  # fewer items than one batch, drop_last
    with pytest.raises(ValueError, match="no batches"):
        next(resumed_batches(acc, loader, TrainState(), max_steps=1))


# --------------------------------------------------------------------------- optimizer_step

X = torch.tensor([[1.0, 2.0, -1.0], [0.5, -3.0, 2.0]])


def prepared(make_accelerator, tmp_path, accum: int = 1):
    """A linear model with plain SGD (lr 1: the update is minus the gradient) and a scheduler that halves the lr."""
    acc = make_accelerator(tmp_path, gradient_accumulation_steps=accum)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    model, opt, sched = acc.prepare(model, opt, sched)
    return acc, model, opt, sched


def loss_of(model, x: torch.Tensor = X) -> torch.Tensor:
    return model(x).pow(2).sum() * 10  # a large gradient: its norm is far above the clip


def true_grad(model, x: torch.Tensor = X) -> list[torch.Tensor]:
    return torch.autograd.grad(loss_of(model, x), list(model.parameters()))


def norm(tensors) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])))


def test_clipped_step_returns_the_norm_and_moves_by_the_clipped_gradient(make_accelerator, tmp_path):
    acc, model, opt, sched = prepared(make_accelerator, tmp_path)
    before, grad = [p.detach().clone() for p in model.parameters()], true_grad(model)
    with acc.accumulate(model):
        terms = optimizer_step(acc, loss_of(model), model.parameters(), opt, sched, grad_clip=0.5)
    assert set(terms) == {"grad_norm"} and float(terms["grad_norm"]) == pytest.approx(norm(grad), rel=1e-5)
    moved = [b - p.detach() for b, p in zip(before, model.parameters())]
    assert norm(moved) == pytest.approx(0.5, rel=1e-4)  # lr 1: the step is the clipped gradient
    for m, g in zip(moved, grad):
        assert torch.allclose(m, g * 0.5 / norm(grad), rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # zeroed, set to None
    assert sched.get_last_lr() == [0.5]  # stepped once


def test_no_clip_returns_nothing_and_steps_by_the_whole_gradient(make_accelerator, tmp_path):
    acc, model, opt, sched = prepared(make_accelerator, tmp_path)
    before, grad = [p.detach().clone() for p in model.parameters()], true_grad(model)
    with acc.accumulate(model):
        assert optimizer_step(acc, loss_of(model), model.parameters(), opt, sched, grad_clip=0) == {}
    for b, p, g in zip(before, model.parameters(), grad):
        assert torch.allclose(b - p.detach(), g, rtol=1e-5)
    assert sched.get_last_lr() == [0.5]


def test_accumulation_steps_optimizer_and_scheduler_on_the_last_micro_batch_only(make_accelerator, tmp_path):
    acc, model, opt, sched = prepared(make_accelerator, tmp_path, accum=2)
    x1, x2 = X[:1], X[1:]
    before = [p.detach().clone() for p in model.parameters()]
    g1, g2 = true_grad(model, x1), true_grad(model, x2)
    with acc.accumulate(model):
        assert optimizer_step(acc, loss_of(model, x1), model.parameters(), opt, sched, grad_clip=0.5) == {}
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))  # no step yet
    assert all(p.grad is not None for p in model.parameters())  # the gradient is kept for the next micro-batch
    assert sched.get_last_lr() == [1.0]
    with acc.accumulate(model):
        terms = optimizer_step(acc, loss_of(model, x2), model.parameters(), opt, sched, grad_clip=0.5)
    mean = [(a + b) / 2 for a, b in zip(g1, g2)]  # accelerate divides each micro-batch's loss by 2
    assert float(terms["grad_norm"]) == pytest.approx(norm(mean), rel=1e-5)
    assert norm([b - p.detach() for b, p in zip(before, model.parameters())]) == pytest.approx(0.5, rel=1e-4)
    assert sched.get_last_lr() == [0.5]


def test_count_step_counts_follows_the_ema_and_flushes_when_due(make_accelerator, tmp_path):
    acc, model, opt, sched = prepared(make_accelerator, tmp_path)
    log = TrainLogger(acc, tmp_path / "run", total_steps=3, every=2, tensorboard=False, progress_bar=False)
    ema, state = EMA(model, decay=0.5), TrainState()
    w0, expected, finals = model.weight.detach().clone(), model.weight.detach().clone(), []
    for step in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)  # the "optimizer step"
        d = min(0.5, (1 + step) / (10 + step))  # EMA's warm-up decay after `step` updates
        expected = d * expected + (1 - d) * (w0 + step + 1)
        log.add(loss=float(step))
        finals.append(count_step(state, 3, log, torch.tensor(float(step)), sched, ema, model, skipped_files=7))
    assert state.step == 3 and finals == [False, False, True]
    assert ema.num_updates == 3 and torch.allclose(ema.shadow["weight"], expected)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]  # every 2 steps, and the last
    assert [r["loss"] for r in rows] == [0.5, 2.0] and all(r["skipped_files"] == 7 and r["lr"] == 1.0 for r in rows)
    log.close()


def test_every_or_final_runs_periodic_work_every_n_steps_and_at_the_end():
    assert [s for s in range(1, 11) if every_or_final(4, s, final=s == 10)] == [4, 8, 10]
    assert [s for s in range(1, 11) if every_or_final(0, s, final=s == 10)] == [10]  # 0: off, but the last step runs
    assert every_or_final(5, 5, final=False) and not every_or_final(5, 6, final=False)
