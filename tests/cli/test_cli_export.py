"""`fsqtok export`: a saved tokenizer -> an ONNX folder; arguments and the output folder checked first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fsqtok.cli import main
from fsqtok.tokenizers import AudioConfig, AudioTokenizer, ImageConfig, ImageTokenizer


@pytest.fixture(scope="module")
def image_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "image"
    ImageTokenizer(ImageConfig(base_channels=8, channel_mult=(1, 2))).save_pretrained(path)
    return str(path)


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_export_writes_a_folder_that_runs(image_tok, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from fsqtok.export import OnnxTokenizer

    out = tmp_path / "onnx"
    code, stdout, err = run(["export", "--tokenizer", image_tok, "--format", "onnx", "-o", str(out)], capsys)
    assert code == 0, err
    assert "encoder.onnx (batch, 3, height, width) -> int64 (batch, tokens_h, tokens_w)" in stdout
    assert "agrees with PyTorch on 100.00%" in stdout
    meta = json.loads((out / "fsqtok_onnx.json").read_text())
    tok = ImageTokenizer.from_pretrained(image_tok)
    assert meta["source"] == image_tok and meta["weights_sha256"] == tok.weights_hash()
    x = torch.rand(1, 3, 21, 30) * 2 - 1
    assert torch.equal(OnnxTokenizer(out).encode(x), tok.encode(x))


@pytest.mark.parametrize("argv, message", [
    (["--num-stages", "2"], "--num-stages needs a residual FSQ tokenizer"),
    (["--format", "tflite"], "invalid choice: 'tflite'"),
])
def test_bad_arguments_are_one_line_and_write_nothing(image_tok, tmp_path, capsys, argv, message):
    out = tmp_path / "onnx"
    code, _, err = run(["export", "-t", image_tok, "-o", str(out), *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())


def test_a_foreign_folder_is_refused_before_loading(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run(["export", "-t", str(tmp_path / "missing-tokenizer"), "-o", str(out)], capsys)
    assert code == 2 and "no such folder" in err  # the tokenizer argument first
    (tmp_path / "tok").mkdir()
    code, _, err = run(["export", "-t", str(tmp_path / "tok"), "-o", str(out)], capsys)
    assert code == 2
    assert err == f"error: -o {out}: is not empty and holds no fsqtok_onnx.json; export into a new or empty folder\n"
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_residual_stages_are_checked_against_the_tokenizer(tmp_path, capsys):
    path = tmp_path / "audio"
    AudioTokenizer(AudioConfig(base_channels=4, strides=(2, 4), dilations=(1,))).save_pretrained(path)
    code, _, err = run(["export", "-t", str(path), "-o", str(tmp_path / "o"), "--num-stages", "5"], capsys)
    assert code == 2 and "--num-stages 5: the tokenizer has 4 stage(s)" in err


_BLOCK = """
import sys
for name in ("onnx", "onnxruntime", "onnxscript"):
    sys.modules[name] = None  # as if fsqtok[onnx] were not installed
import fsqtok, fsqtok.export, fsqtok.cli
from fsqtok.tokenizers import ImageTokenizer
assert fsqtok.export.missing_onnx_packages() == ["onnx", "onnxscript", "onnxruntime"]
sys.exit(fsqtok.cli.main(["export", "-t", sys.argv[1], "-o", sys.argv[2]]))
"""


def test_fsqtok_imports_and_says_what_to_install_without_onnx(image_tok, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _BLOCK, image_tok, str(tmp_path / "o")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: --format onnx needs onnx, onnxscript, onnxruntime: pip install 'fsqtok[onnx]'\n")
    assert not (tmp_path / "o").exists()
