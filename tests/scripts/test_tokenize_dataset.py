"""scripts/tokenize_dataset.py and `fsqtok tokenize` are one program: same flags, same output.

(The script also runs as a subprocess in tests/shards: crash-resume and the 2-process run.)
"""

import runpy
import sys
from pathlib import Path

import pytest
import torch

from fsqtok.cli import main as cli_main
from fsqtok.datasets.samples import sample_images
from fsqtok.media import read_image, write_image
from fsqtok.shards import ShardDataset, verify
from fsqtok.data import Preprocess
from fsqtok.shards.cli import build_parser, main
from fsqtok.tokenizers import ImageTokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tokenize_dataset.py"


def test_script_help_is_the_cli_help(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert e.value.code == 0
    script_help = capsys.readouterr().out
    assert cli_main(["tokenize", "--help"]) == 0
    assert script_help == capsys.readouterr().out  # one parser for both
    flags = [o for a in build_parser()._actions for o in a.option_strings if o.startswith("--")]
    for flag in ("--tokenizer", "--data", "--output", "--batch-size", "--shard-size", "--overwrite", "--num-workers",
                 "--size", "--clip-seconds", "--num-frames", "--labels", "--column", "--label-column", "--streaming"):
        assert flag in flags and flag in script_help


@pytest.fixture(autouse=True)
def _one_torch_thread():  # a preempted second thread stalls the encoder on a busy 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cli_and_script_entry_write_the_same_shards(tmp_path, capsys):
    tok = ImageTokenizer().eval()
    tok.save_pretrained(tmp_path / "tok")
    x = sample_images(3, 24, seed=0)[..., 2:]  # 24x22: --size resizes the short side and crops the centre
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        write_image(tmp_path / "imgs" / f"{i}.png", x[i])
    args = ["--tokenizer", str(tmp_path / "tok"), "--data", str(tmp_path / "imgs"), "--shard-size", "2",
            "--num-workers", "0", "--size", "16"]
    assert cli_main(["tokenize", *args, "--output", str(tmp_path / "a")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("tokenized 3 of 3 samples into 2 shard(s)") and "0 failed" in line and "samples/s" in line
    assert main([*args, "--output", str(tmp_path / "b")]) == 0
    for rel in ("data/train-00000.parquet", "data/train-00001.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    ds = ShardDataset(tmp_path / "a")
    prep = Preprocess("image", size=16)
    with torch.inference_mode():
        expected = tok.encode(torch.stack([prep.image(read_image(tmp_path / "imgs" / k)) for k in ds.keys]))
    assert expected.shape == (3, 2, 2) and torch.equal(torch.from_numpy(ds.array()).long(), expected)
    assert verify(tmp_path / "a") == []
    assert main(["--data", "x"]) == 2  # missing --tokenizer/--output: one line, exit 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "--tokenizer" in err
