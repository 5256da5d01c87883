"""scripts/demo.py's output folder: an earlier demo's is replaced, anything else is refused untouched.
(The demo itself is `make demo`, minutes long; this checks only what happens before training.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("fsqtok_demo_script", ROOT / "scripts" / "demo.py")
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


def test_an_earlier_demo_folder_is_replaced(tmp_path):
    done, interrupted, empty = tmp_path / "done", tmp_path / "interrupted", tmp_path / "empty"
    (done / "tokenizer").mkdir(parents=True)
    (done / "report.json").write_text("{}")
    (interrupted / "run").mkdir(parents=True)
    (interrupted / "run" / "config.yaml").write_text("seed: 0\n")
    empty.mkdir()
    for out in (done, interrupted):
        assert demo.clear_previous_demo(out) is None and not out.exists()
    assert demo.clear_previous_demo(empty) is None and empty.exists()
    assert demo.clear_previous_demo(tmp_path / "missing") is None


def test_any_other_folder_or_file_is_refused_and_kept(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert demo.main(["--output-dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --output-dir {mine} is a folder that is not an earlier demo")
    assert (mine / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    assert "is a file" in demo.clear_previous_demo(afile) and afile.read_text() == "keep"
