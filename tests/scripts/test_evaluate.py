"""scripts/evaluate.py on tiny untrained tokenizers of every modality (in-process)."""

from __future__ import annotations

import json

import pytest

from fsqtok.tokenizers import AudioConfig, AudioTokenizer, DepthConfig, DepthTokenizer, ImageConfig, ImageTokenizer
from fsqtok.tokenizers import VideoConfig, VideoTokenizer
from script_utils import load_script


TINY = {
    "image": (ImageTokenizer(ImageConfig(base_channels=4, channel_mult=(1, 2), mid_attention=False)),
              ["--size", "16"], ["psnr", "ssim", "bits_per_pixel"]),
    "depth": (DepthTokenizer(DepthConfig(base_channels=4, channel_mult=(1, 2), mid_attention=False)),
              ["--size", "16"], ["rmse", "abs_rel", "delta1", "bits_per_pixel"]),
    "audio": (AudioTokenizer(AudioConfig(base_channels=4, strides=(4, 8), dilations=(1,), num_stages=2)),
              ["--seconds", "0.1"], ["si_sdr", "mel_distance", "stft_distance", "bits_per_second"]),
    "video": (VideoTokenizer(VideoConfig(base_channels=4, channel_mult=(1, 2), temporal_downsample=(True,),
                                         levels=(8, 5, 5, 5))),
              ["--size", "16", "--frames", "5"], ["psnr", "ssim", "bits_per_pixel", "bits_per_second"]),
}


@pytest.fixture(scope="module")
def evaluate_script():
    return load_script("evaluate")


def _reset():
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.mark.parametrize("modality", list(TINY))
def test_evaluate_writes_json_markdown_and_grid(evaluate_script, tmp_path, modality):
    tokenizer, args, keys = TINY[modality]
    tokenizer.save_pretrained(tmp_path / "tok")
    _reset()
    out = tmp_path / "eval"
    code = evaluate_script.main(["--tokenizer", str(tmp_path / "tok"), "--name", "tiny", "--num", "3",
                                 "--batch-size", "2", "--grid", "2", "--output-dir", str(out), *args])
    _reset()
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    metrics = report["results"]["tiny"]
    assert metrics["items"] == 3
    for key in keys + ["usage", "perplexity", "bits_per_token"]:
        assert key in metrics, key
    assert 0 < metrics["usage"] <= 1 and metrics["perplexity"] >= 1
    assert report["tokenizers"]["tiny"]["modality"] == modality
    assert "| tiny |" in (out / "eval.md").read_text()
    assert (out / "tiny_grid.png").stat().st_size > 0


def test_missing_tokenizer_is_one_line_usage_error(evaluate_script, tmp_path, capsys):
    _reset()
    assert evaluate_script.main(["--tokenizer", str(tmp_path / "nope"), "--output-dir", str(tmp_path)]) == 2
    _reset()
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "nope: no such folder" in err


def test_two_runs_named_tokenizer_keep_both_rows(evaluate_script, tmp_path):
    """Every recipe output is called tokenizer/: rows are named by the shortest path tail that differs."""
    tokenizer, args, _ = TINY["image"]
    tokenizer.save_pretrained(tmp_path / "runA" / "tokenizer")
    ImageTokenizer(tokenizer.config).save_pretrained(tmp_path / "runB" / "tokenizer")
    _reset()
    code = evaluate_script.main(["--tokenizer", str(tmp_path / "runA/tokenizer"), "--tokenizer",
                                 str(tmp_path / "runB/tokenizer"), "--num", "2", "--grid", "1", "--output-dir", str(tmp_path / "e"),
                                 *args])
    _reset()
    assert code == 0
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert list(report["results"]) == ["runA/tokenizer", "runB/tokenizer"]
    assert report["results"]["runA/tokenizer"] != report["results"]["runB/tokenizer"]
    assert sorted(p.name for p in (tmp_path / "e").glob("*_grid.png")) == ["runA_tokenizer_grid.png",
                                                                           "runB_tokenizer_grid.png"]


def test_row_names(evaluate_script):
    names = evaluate_script.row_names
    assert names(["a/x/tok", "b/x/tok", "c/y"], []) == ["a/x/tok", "b/x/tok", "y"]
    assert names(["a/tok", "b/tok"], ["first"]) == ["first", "tok"]
    with pytest.raises(ValueError, match="more than one tokenizer"):
        names(["a/tok", "a/tok"], [])
    with pytest.raises(ValueError, match="2 --name for 1 --tokenizer"):
        names(["a"], ["x", "y"])


def test_greyscale_tokenizer_is_evaluated_on_grey_media(evaluate_script, tmp_path):
    """A tokenizer with in_channels=1 gets one-channel held-out media (issue 10 item 4)."""
    ImageTokenizer(ImageConfig(in_channels=1, base_channels=4, channel_mult=(1, 2), mid_attention=False)).save_pretrained(
        tmp_path / "grey")
    _reset()
    code = evaluate_script.main(["--tokenizer", str(tmp_path / "grey"), "--num", "2", "--batch-size", "2",
                                 "--size", "16", "--output-dir", str(tmp_path / "eval")])
    _reset()
    assert code == 0
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["results"]["grey"]["items"] == 2


def test_an_output_dir_that_is_a_file_is_refused_before_any_work(evaluate_script, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    _reset()
    assert evaluate_script.main(["--tokenizer", str(tmp_path), "--output-dir", str(tmp_path / "file")]) == 2
    _reset()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--output-dir {tmp_path / 'file'}: is a file" in err
