"""A converted Cosmos image tokenizer (fixture scale) drives `fsqtok tokenize` and recipes/train_maskgit.py."""

from __future__ import annotations

import shutil

import torch

from fsqtok.cli import main as cli_main
from fsqtok.datasets.samples import sample_images
from fsqtok.media import read_image, write_image
from fsqtok.tokenizers import CosmosImageTokenizer, load_tokenizer
from recipe_utils import ROOT, tokenize_labelled_folder, train_maskgit_on

FIXTURE = ROOT / "tests" / "fixtures" / "cosmos" / "image_haar2"  # 16x16 compression, mid attention


def test_tokenize_and_train_maskgit_on_a_converted_cosmos_tokenizer(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURE / "model.safetensors", src / "model.safetensors")
    tok_dir = tmp_path / "cosmos"
    assert cli_main(["convert", "cosmos", str(src), "--config", str(FIXTURE / "kwargs.json"), "-o", str(tok_dir)]) == 0
    images = sample_images(8, size=64, split="val", seed=1)
    for i, image in enumerate(images):
        (tmp_path / "images" / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        write_image(tmp_path / "images" / f"class{i % 2}" / f"{i}.png", image)
    shards = tmp_path / "shards"
    data = tokenize_labelled_folder(tok_dir, tmp_path / "images", shards, capsys)
    tok = load_tokenizer(tok_dir)
    assert isinstance(tok, CosmosImageTokenizer) and data.array().shape == (8, 4, 4)
    assert data.manifest["tokenizer"]["weights_sha256"] == tok.weights_hash()
    assert data.manifest["tokenizer"]["codebook_size"] == 64000
    read = torch.stack([read_image(tmp_path / "images" / key) for key in data.keys])
    assert torch.equal(torch.as_tensor(data.array()).long(), tok.encode(read))  # the shards hold the port's tokens

    model = train_maskgit_on(shards, tmp_path / "run", capsys)
    assert model.config.codebook_size == 64000 and model.config.grid == (4, 4)
    assert model.config.tokenizer_sha256 == tok.weights_hash() and model.config.class_names == ("class0", "class1")
