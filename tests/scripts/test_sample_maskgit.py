"""scripts/sample_maskgit.py: PNGs, a labelled grid and token shards from a saved MaskGIT; bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from fsqtok.generative import MaskGIT, MaskGITConfig
from fsqtok.generative.maskgit.sampling import tokenizer_hash
from fsqtok.shards import ShardDataset
from fsqtok.tokenizers import ImageConfig, ImageTokenizer
from script_utils import load_script



@pytest.fixture(scope="module")
def script():
    return load_script("sample_maskgit")


def save_tokenizer(path: Path, seed: int) -> ImageTokenizer:
    torch.manual_seed(seed)
    tok = ImageTokenizer(ImageConfig(levels=(5, 5), base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                                     mid_attention=False))
    tok.save_pretrained(path)
    return tok


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    tok = save_tokenizer(root / "tok", 0)
    save_tokenizer(root / "other", 1)
    cfg = MaskGITConfig(codebook_size=25, grid=(4, 4), num_classes=3, width=32, depth=1, heads=2,
                        class_names=("cat", "dog", "T-shirt/top"), tokenizer=str(root / "tok"),
                        tokenizer_sha256=tokenizer_hash(tok, str(root / "tok")))
    torch.manual_seed(0)
    MaskGIT(cfg).save_pretrained(root / "model")
    return root


def test_writes_pngs_grid_and_token_shards(script, saved, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", str(saved / "model"), "--num-samples", "5", "--labels", "2,dog", "--steps", "3",
            "--guidance", "0.5", "--seed", "3", "--output-dir", str(out), "--tokens-out", str(out / "tokens")]
    assert script.main(args) == 0
    assert "sampled 5 images" in capsys.readouterr().out
    pngs = sorted(p.name for p in (out / "images").iterdir())
    assert pngs == ["0_T-shirt_top.png", "1_dog.png", "2_T-shirt_top.png", "3_dog.png", "4_T-shirt_top.png"]
    assert Image.open(out / "images" / pngs[0]).size == (8, 8)
    w, h = Image.open(out / "grid.png").size
    assert h >= 2 * 8 and w > 3 * 8  # two labelled rows of up to three samples
    record = json.loads((out / "samples.json").read_text())
    assert record["labels"] == ["T-shirt/top", "dog", "T-shirt/top", "dog", "T-shirt/top"]
    shards = ShardDataset(out / "tokens")
    assert shards.labels == record["labels"] and shards.array().shape == (5, 4, 4)
    model = MaskGIT.from_pretrained(saved / "model")
    expected = model.generate(torch.tensor([2, 1, 2, 1, 2]), steps=3, guidance=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.from_numpy(shards.array().astype("int64")), expected)  # the tokens written are the samples
    assert script.main(args) == 2  # never writes over earlier samples
    assert "holds samples already" in capsys.readouterr().err


def test_refuses_another_tokenizer_and_bad_arguments(script, saved, tmp_path, capsys):
    base = ["--model", str(saved / "model"), "--num-samples", "2", "--steps", "2"]
    assert script.main([*base, "--output-dir", str(tmp_path / "a"), "--tokenizer", str(saved / "other")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other weights" in err[0]
    assert not (tmp_path / "a").exists()
    assert script.main([*base, "--output-dir", str(tmp_path / "b"), "--labels", "cow"]) == 2
    assert "--labels: 'cow' is not a class id" in capsys.readouterr().err
    assert script.main([*base, "--output-dir", str(tmp_path / "c"), "--guidance", "-1"]) == 2
    assert script.main(["--model", str(tmp_path / "nothing"), "--num-samples", "1", "--output-dir", str(tmp_path / "d")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_outputs_are_checked_before_any_sampling(script, saved, tmp_path, capsys, monkeypatch):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(MaskGIT, "generate", lambda *a, **k: pytest.fail("sampled before checking the outputs"))
    base = ["--model", str(saved / "model"), "--num-samples", "2", "--steps", "2"]
    for extra, why in [(["--output-dir", str(tmp_path / "a"), "--tokens-out", str(tmp_path / "foreign")],
                        f"--tokens-out {tmp_path / 'foreign'}: not empty"),
                       (["--output-dir", str(tmp_path / "file")], f"--output-dir {tmp_path / 'file'}: is a file"),
                       (["--output-dir", str(tmp_path / "file" / "x")], "lies under the file")]:
        assert script.main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine" and not (tmp_path / "a").exists()


def test_the_model_folder_s_own_tokenizer_is_used_from_any_directory(script, saved, tmp_path, monkeypatch, capsys):
    """A model whose recorded tokenizer is a relative path that does not resolve here: its own copy is used."""
    import dataclasses
    import shutil

    model = MaskGIT.from_pretrained(saved / "model")
    relative = MaskGIT(dataclasses.replace(model.config, tokenizer="runs/tok"))
    relative.load_state_dict(model.state_dict())
    relative.save_pretrained(tmp_path / "m")
    shutil.copytree(saved / "tok", tmp_path / "m" / "tokenizer")
    monkeypatch.chdir(tmp_path / "m")
    assert script.main(["--model", str(tmp_path / "m"), "--num-samples", "2", "--steps", "2",
                        "--output-dir", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "samples.json").read_text())["tokenizer"] == str(tmp_path / "m" / "tokenizer")
