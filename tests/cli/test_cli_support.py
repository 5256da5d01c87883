"""fsqtok.cli_support: commands end a distributed run's process group on every exit path, and
launched ranks exit without the interpreter teardown that can abort them."""

import os
import subprocess
import sys

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


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_exit_process_flushes_and_keeps_the_exit_code(world_size):
    """A rank of a multi-process launch ends with os._exit (no interpreter teardown), and nothing
    printed is lost either way."""
    code = "import sys; from fsqtok.cli_support import exit_process; print('out', end=''); " \
           "print('err', end='', file=sys.stderr); exit_process(3)"
    env = {**os.environ, "WORLD_SIZE": world_size}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out", "err")


def test_check_output_folder(tmp_path):
    from fsqtok.cli_support import UsageError, check_output_folder

    (tmp_path / "f").write_text("")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    check_output_folder(str(tmp_path / "new" / "deeper"), "--out", empty=True)  # absent: fine
    check_output_folder(str(tmp_path / "full"), "--out")  # a used folder is fine unless it must be empty
    for path, why in [(tmp_path / "f", "is a file"), (tmp_path / "f" / "sub", f"lies under the file {tmp_path / 'f'}")]:
        with pytest.raises(UsageError, match=f"--out {path}: {why}"):
            check_output_folder(str(path), "--out")
    with pytest.raises(UsageError, match="not empty"):
        check_output_folder(str(tmp_path / "full"), "--out", empty=True)
