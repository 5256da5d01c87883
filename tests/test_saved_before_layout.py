"""Folders, token files and shards saved by fsqtok before issue 19's layout move still load and give the same
tokens. ``tests/fixtures/saved_before_layout`` was written by the code at commit 67a18db (see its README.md)."""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fsqtok
from fsqtok.cli import main as cli_main
from fsqtok.generative import MaskGIT, UViMLM, UViMPipeline, UViMStage1
from fsqtok.shards import ShardDataset
from fsqtok.shards.cli import main as tokenize_main
from fsqtok.shards.verify import verify
from fsqtok.tokenizers import load_tokenizer
from fsqtok.tokenizers.token_file import read_tokens_file

FIXTURES = Path(__file__).parent / "fixtures" / "saved_before_layout"
EXPECTED = load_file(str(FIXTURES / "expected.safetensors"))
TOKENIZERS = ["image_tokenizer", "image_tokenizer_vq", "depth_tokenizer", "audio_tokenizer", "video_tokenizer"]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_tokenizer_folder_gives_the_same_tokens(name):
    tok = fsqtok.load_tokenizer(str(FIXTURES / name))
    assert type(tok) is type(load_tokenizer(str(FIXTURES / name))) and tok.model_type == name.removesuffix("_vq")
    with torch.no_grad():
        tokens = tok.encode(EXPECTED[f"{name}.input"])
        assert torch.equal(tokens, EXPECTED[f"{name}.tokens"])
        torch.testing.assert_close(tok.decode(tokens), EXPECTED[f"{name}.decoded"], rtol=1e-5, atol=1e-5)


def test_maskgit_folder_gives_the_same_samples():
    model = fsqtok.load_pretrained(str(FIXTURES / "maskgit"))
    assert type(model) is MaskGIT and model.config.class_names == ("a", "b", "c")
    labels = EXPECTED["maskgit.labels"]
    with torch.no_grad():
        tokens = model.generate(labels, steps=4, generator=torch.Generator().manual_seed(1))
        assert torch.equal(tokens, EXPECTED["maskgit.tokens"])
        torch.testing.assert_close(model(tokens, labels), EXPECTED["maskgit.logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("quantizer", ["fsq", "vq_split"])
def test_uvim_stage1_folder_gives_the_same_codes(quantizer):
    name = f"uvim_stage1_{quantizer}"
    model = fsqtok.load_pretrained(str(FIXTURES / name))
    assert type(model) is UViMStage1 and model.config.quantizer == quantizer
    image, target = EXPECTED[f"{name}.image"], EXPECTED[f"{name}.target"]
    with torch.no_grad():
        indices = model.encode(image, target).indices
        assert torch.equal(indices, EXPECTED[f"{name}.indices"])
        torch.testing.assert_close(model.predict(image, indices), EXPECTED[f"{name}.predict"], rtol=1e-5, atol=1e-5)


def test_uvim_lm_folder_and_pipeline_give_the_same_codes():
    assert type(fsqtok.load_pretrained(str(FIXTURES / "uvim_lm"))) is UViMLM
    pipeline = UViMPipeline.from_pretrained(FIXTURES / "uvim_lm")  # finds ../uvim_stage1_fsq, hash checked
    _, tokens = pipeline.predict(EXPECTED["uvim_stage1_fsq.image"])
    assert torch.equal(tokens, EXPECTED["uvim_lm.tokens"])


def test_old_token_file_reads_and_matches_a_new_encode(tmp_path, monkeypatch):
    monkeypatch.chdir(FIXTURES)  # the file names its tokenizer as "image_tokenizer", relative
    meta, tokens = read_tokens_file("tokens.safetensors")
    assert [item["source"] for item in meta["items"]] == ["0.png", "1.png"] and meta["modality"] == "image"
    new = tmp_path / "new.safetensors"
    assert cli_main(["encode", "-t", "image_tokenizer", "-o", str(new), "images/dog/0.png", "images/cat/1.png"]) == 0
    new_meta, new_tokens = read_tokens_file(str(new))
    assert new_meta["weights_sha256"] == meta["weights_sha256"]
    assert len(tokens) == 2 and all(torch.equal(a, b) for a, b in zip(tokens, new_tokens))
    assert cli_main(["decode", "-t", "image_tokenizer", "tokens.safetensors", "-o", str(tmp_path / "decoded")]) == 0
    assert sorted(p.name for p in (tmp_path / "decoded").iterdir()) == ["0.png", "1.png"]


def test_old_shards_read_verify_and_match_a_new_tokenize(tmp_path):
    old = FIXTURES / "shards"
    assert verify(old) == []
    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    new = tmp_path / "shards"
    assert tokenize_main(["-t", str(FIXTURES / "image_tokenizer"), "--data", str(tmp_path / "images"), "-o", str(new),
                          "--shard-size", "3", "--labels", "folder", "--quiet", "--num-workers", "0"]) == 0
    a, b = ShardDataset(old), ShardDataset(new)
    assert len(a) == len(b) == 4
    for i in range(4):
        assert a[i]["key"] == b[i]["key"] and a[i]["label"] == b[i]["label"]
        assert torch.equal(a[i]["tokens"], b[i]["tokens"])
