"""The recipe command line and its one-line errors (one rank reports what every rank meets)."""

from __future__ import annotations

import pytest

from fsqtok.data import DataError
from fsqtok.training import RecipeConfigError, recipe_args, run_recipe


def test_resume_followed_by_an_override_is_not_a_checkpoint(tmp_path):
    a = recipe_args(["--config", "c.yaml", "--resume", "max_steps=6", "optim.lr=1"])
    assert (a.resume, a.overrides) == ("latest", ["max_steps=6", "optim.lr=1"])
    a = recipe_args(["--config", "c.yaml", "max_steps=6", "--resume", str(tmp_path), "--overwrite", "seed=1"])
    assert (a.resume, a.overrides, a.overwrite) == (str(tmp_path), ["max_steps=6", "seed=1"], True)
    a = recipe_args(["--config", "c.yaml", "--resume"])
    assert (a.resume, a.overrides, a.overwrite, a.debug) == ("latest", [], False, False)


def run(body, *argv):
    return run_recipe(lambda args: body(), ["--config", "c.yaml", *argv])


def raise_(e):
    def body():
        raise e
    return body


def test_known_errors_are_one_line_each_exit_1(capsys):
    assert run(raise_(RecipeConfigError("a=0: must be > 0\nb=x: must be one of y"))) == 1
    assert capsys.readouterr().err == "error: a=0: must be > 0\nerror: b=x: must be one of y\n"
    assert run(raise_(DataError("no files"))) == 1
    assert capsys.readouterr().err == "error: no files\n"


def test_only_rank_0_reports_known_errors(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr("fsqtok.training.runner.RANK0_GRACE_S", 0.0)
    assert run(raise_(RecipeConfigError("bad"))) == 1
    assert capsys.readouterr().err == ""
    assert run(raise_(ZeroDivisionError("boom"))) == 1  # a bug: every rank that meets it says so
    assert capsys.readouterr().err == "error (rank 1, ZeroDivisionError): boom\n"


def test_bad_arguments_exit_2_and_debug_reraises(capsys):
    assert run_recipe(lambda a: 0, ["--bogus"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert run(lambda: 0) == 0
    with pytest.raises(RecipeConfigError):
        run(raise_(RecipeConfigError("bad")), "--debug")
