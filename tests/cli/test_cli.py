"""The `fsqtok` command: encode / decode / reconstruct / info, and its one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fsqtok import media
from fsqtok.cli import main
from fsqtok.tokenizers import AudioTokenizer, ImageTokenizer


@pytest.fixture(scope="module")
def image_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "image"
    ImageTokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def audio_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "audio"
    AudioTokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    media.write_image(str(path), torch.rand(3, 37, 50) * 2 - 1)  # odd size: padded and cropped back
    return str(path)


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_info(image_tok, capsys):
    code, out, err = run(["info", image_tok, "--json"], capsys)
    assert code == 0 and err == ""
    info = json.loads(out)
    assert info["modality"] == "image" and info["codebook_size"] == 1000


def test_encode_decode_round_trip(image_tok, photo, tmp_path, capsys):
    tokens = tmp_path / "t.safetensors"
    code, _, err = run(["encode", "--tokenizer", image_tok, photo, "-o", str(tokens)], capsys)
    assert code == 0, err
    with safe_open(str(tokens), framework="pt") as f:
        meta = json.loads(f.metadata()["fsqtok"])
        t = f.get_tensor("tokens.0")
    assert meta["modality"] == "image" and meta["items"][0]["input_shape"] == [1, 3, 37, 50]
    tok = ImageTokenizer.from_pretrained(image_tok)
    assert meta["weights_sha256"] == tok.weights_hash() and "config_hash" not in meta
    assert torch.equal(t, tok.encode(media.read_image(photo)[None]))
    out = tmp_path / "rec.png"
    code, _, err = run(["decode", "--tokenizer", image_tok, str(tokens), "-o", str(out)], capsys)
    assert code == 0, err
    assert media.read_image(str(out)).shape == (3, 37, 50)


def test_reconstruct_audio_at_another_rate(audio_tok, tmp_path, capsys):
    src = tmp_path / "tone.wav"
    sr = 22050
    t = np.arange(int(0.5 * sr)) / sr
    media.write_audio(str(src), torch.tensor(0.5 * np.sin(2 * np.pi * 440 * t), dtype=torch.float32)[None], sr)
    out = tmp_path / "rec.wav"
    code, _, err = run(["reconstruct", "--tokenizer", audio_tok, str(src), "-o", str(out), "--num-stages", "2"], capsys)
    assert code == 0, err
    wav, out_sr = media.read_audio(str(out))
    assert out_sr == 16000 and wav.shape == (1, 8000)


def test_bad_input_is_one_line_exit_1(image_tok, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    code, out, err = run(["encode", "--tokenizer", image_tok, str(broken), "-o", str(tmp_path / "t.safetensors")], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "broken.png" in err
    assert not (tmp_path / "t.safetensors").exists()


def test_bad_arguments_exit_2(image_tok, audio_tok, photo, tmp_path, capsys):
    code, _, err = run(["encode", "--tokenizer", str(tmp_path / "nope"), photo, "-o", "x.safetensors"], capsys)
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    code, _, err = run(["encode", "--tokenizer", audio_tok, photo, "-o", str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "image file" in err and "audio" in err
    code, _, err = run(["encode", "--tokenizer", image_tok, photo, "-o", str(tmp_path / "x.bin")], capsys)
    assert code == 2 and ".safetensors" in err
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and err.count("\n") == 1


def test_decode_with_another_tokenizer_is_refused(image_tok, photo, tmp_path, capsys):
    tokens = tmp_path / "t.safetensors"
    assert run(["encode", "--tokenizer", image_tok, photo, "-o", str(tokens)], capsys)[0] == 0
    other = tmp_path / "other"
    ImageTokenizer(ImageTokenizer().config.__class__(levels=(8, 5, 5, 5), base_channels=8)).save_pretrained(other)
    code, _, err = run(["decode", "--tokenizer", str(other), str(tokens), "-o", str(tmp_path / "r.png")], capsys)
    assert code == 1 and "decode with the tokenizer that encoded them" in err


def test_console_script_no_traceback(tmp_path):
    exe = [sys.executable, "-m", "fsqtok.cli"]
    proc = subprocess.run([*exe, "info", str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_reconstruct_never_writes_over_its_input(image_tok, photo, tmp_path, capsys, monkeypatch):
    """Issue 17 §2.11: -o naming the input (by any path) is refused before any work; the photo is kept."""
    before = open(photo, "rb").read()
    monkeypatch.chdir(tmp_path)
    for same in (photo, "./photo.png"):
        code, _, err = run(["reconstruct", "--tokenizer", image_tok, photo, "-o", same], capsys)
        assert code == 2 and err.count("\n") == 1 and "writing it would replace the input" in err
    assert open(photo, "rb").read() == before


def test_a_missing_output_folder_is_not_called_a_missing_file(tmp_path):
    """A writer whose folder does not exist says so (it read like a missing input: 'd.png: no such file')."""
    with pytest.raises(media.MediaError, match=r"d\.png: cannot write it: no such folder .*nope \(create it first\)"):
        media.write_image(str(tmp_path / "nope" / "d.png"), torch.zeros(3, 4, 4))
