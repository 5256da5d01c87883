"""Stop requests (Ctrl-C / SIGTERM) and the per-step flags every process agrees on."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from fsqtok.training import NonFiniteLoss, StepFlags, StopRequest


def test_first_signal_requests_a_stop_second_ctrl_c_interrupts_and_handlers_return():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopRequest() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert {s: signal.getsignal(s) for s in before} == before


def test_ctrl_c_requests_a_stop():
    with StopRequest() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested


def test_flags_agree_by_sum(make_accelerator, tmp_path):
    acc = make_accelerator(tmp_path)
    assert StepFlags().agree(acc) == StepFlags(non_finite=False, stop=False, failed_files=0)
    flags = StepFlags(non_finite=not torch.isfinite(torch.tensor(float("nan"))).item(), stop=True, failed_files=3)
    assert flags.agree(acc) == StepFlags(non_finite=True, stop=True, failed_files=3)


def test_non_finite_loss_names_the_step_terms_and_last_good_checkpoint():
    e = NonFiniteLoss(7, {"mse": torch.tensor(float("nan")), "kl": 0.5}, Path("run/checkpoints/step-000005"))
    assert str(e) == ("non-finite loss at step 7 (mse=nan kl=0.5); stopped without saving; "
                      "last good checkpoint: run/checkpoints/step-000005")
    assert "last good checkpoint: none" in str(NonFiniteLoss(1, {}, None))


class TwoProcesses:
    """Stands in for an Accelerator of two processes that met the same flags."""

    device = torch.device("cpu")

    def reduce(self, t, reduction):
        return {"sum": 2 * t, "mean": t}[reduction]


def test_flags_are_summed_across_processes():
    assert StepFlags(failed_files=3).agree(TwoProcesses()) == StepFlags(failed_files=6)
    assert StepFlags(non_finite=True).agree(TwoProcesses()).non_finite
