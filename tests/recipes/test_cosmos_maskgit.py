"""A converted Cosmos image tokenizer (fixture scale) drives `fsqtok tokenize` and recipes/train_maskgit.py."""

from __future__ import annotations

import shutil

import torch

from fsqtok.cli import main as cli_main
from fsqtok.datasets.samples import sample_images
from fsqtok.generative import MaskGIT
from fsqtok.media import read_image, write_image
from fsqtok.shards import ShardDataset
from fsqtok.tokenizers import CosmosImageTokenizer, load_tokenizer
from recipe_utils import ROOT, load_recipe, reset_accelerate

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
    code = cli_main(["tokenize", "--tokenizer", str(tok_dir), "--data", str(tmp_path / "images"), "--output",
                     str(shards), "--labels", "folder", "--batch-size", "4", "--quiet"])
    assert code == 0, capsys.readouterr().err
    data = ShardDataset(shards)
    tok = load_tokenizer(tok_dir)
    assert isinstance(tok, CosmosImageTokenizer) and data.array().shape == (8, 4, 4)
    assert data.manifest["tokenizer"]["weights_sha256"] == tok.weights_hash()
    assert data.manifest["tokenizer"]["codebook_size"] == 64000
    read = torch.stack([read_image(tmp_path / "images" / key) for key in data.keys])
    assert torch.equal(torch.as_tensor(data.array()).long(), tok.encode(read))  # the shards hold the port's tokens

    recipe = load_recipe("train_maskgit")
    out = tmp_path / "run"
    reset_accelerate()
    try:
        code = recipe.main(["--config", str(ROOT / "recipes" / "configs" / "maskgit" / "fashion_mnist_debug.yaml"),
                            f"output_dir={out}", "max_steps=2", "data.debug_images=0", f"data.train={shards}",
                            "log.tensorboard=false"])
    finally:
        reset_accelerate()
    assert code == 0, capsys.readouterr().err
    model = MaskGIT.from_pretrained(out / "maskgit")
    assert model.config.codebook_size == 64000 and model.config.grid == (4, 4)
    assert model.config.tokenizer_sha256 == tok.weights_hash() and model.config.class_names == ("class0", "class1")
