"""A converted NeMo codec (fixture scale) drives `fsqtok tokenize` and recipes/train_maskgit.py on its
grouped tokens (B, G, N)."""

from __future__ import annotations

from fsqtok.cli import main as cli_main
from fsqtok.datasets.samples import sample_audio
from fsqtok.media import write_audio
from fsqtok.tokenizers import NemoAudioTokenizer, load_tokenizer
from recipe_utils import ROOT, tokenize_labelled_folder, train_maskgit_on

FIXTURE = ROOT / "tests" / "fixtures" / "nemo" / "lfsc_small.nemo"


def test_tokenize_and_train_maskgit_on_a_converted_nemo_codec(tmp_path, capsys):
    tok_dir = tmp_path / "lfsc"
    assert cli_main(["convert", "nemo", str(FIXTURE), "-o", str(tok_dir)]) == 0
    wav = sample_audio(8, 0.5, 22050, seed=2)
    for i in range(8):
        (tmp_path / "audio" / f"speaker{i % 2}").mkdir(parents=True, exist_ok=True)
        write_audio(tmp_path / "audio" / f"speaker{i % 2}" / f"{i}.wav", wav[i], 22050)
    shards = tmp_path / "shards"
    data = tokenize_labelled_folder(tok_dir, tmp_path / "audio", shards, capsys)
    tok = load_tokenizer(tok_dir)
    assert isinstance(tok, NemoAudioTokenizer) and data.array().shape == (8, 8, 11)
    assert data.manifest["tokenizer"]["weights_sha256"] == tok.weights_hash()

    cfg = train_maskgit_on(shards, tmp_path / "run", capsys).config
    assert cfg.grid == (8, 11) and cfg.codebook_size == 2016  # groups x frames as the token grid
    assert cfg.class_names == ("speaker0", "speaker1") and cfg.tokenizer_sha256 == tok.weights_hash()
