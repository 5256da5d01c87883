"""fsqtok.cli_support: every command ends a distributed run's process group, whatever its exit path."""

import pytest
import torch.distributed as dist

from fsqtok.cli_support import EXIT_INPUT, UsageError, run_command


def _fail_input(argv):
    raise ValueError("broken.png: not a valid image file")


def _fail_usage(argv):
    raise UsageError("--size must be >= 1, got 0")


@pytest.mark.parametrize("body, code", [(lambda argv: 0, 0), (_fail_input, EXIT_INPUT), (_fail_usage, 2)])
def test_process_group_is_ended_on_every_exit_path(tmp_path, body, code, capsys):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    assert run_command(body, []) == code
    assert not dist.is_initialized()
    assert capsys.readouterr().err.count("\n") == (0 if code == 0 else 1)
