"""Hugging Face `datasets` sources through `fsqtok tokenize`: save_to_disk with Image/Audio columns,
a local Parquet folder and an ImageFolder (``--data-format imagefolder``)."""


import datasets
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from fsqtok import load_tokenizer
from fsqtok.datasets.samples import sample_audio, sample_images
from fsqtok.media import read_audio, read_image, write_audio, write_image
from fsqtok.shards import ShardDataset, read_manifest, verify
from fsqtok.data.hf import row_key
from fsqtok.shards.cli import main
from fsqtok.tokenizers import AudioTokenizer

N = 6
NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def hf_env(shard_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    x = sample_images(N, 32, seed=5)
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    pil = [Image.fromarray(a) for a in u8]
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=NAMES)})
    ds = datasets.Dataset.from_dict({"img": pil, "y": [i % 3 for i in range(N)]}, features=feats)
    ds.save_to_disk(str(root / "saved"))
    (root / "pq").mkdir()
    ds.to_parquet(str(root / "pq" / "train.parquet"))
    for i in range(N):
        d = root / "if" / ("cat" if i % 2 else "dog")
        d.mkdir(parents=True, exist_ok=True)
        write_image(d / f"{i:03d}.png", x[i])
    expected_x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    tok = load_tokenizer(shard_env["tok"]).eval()
    with torch.inference_mode():
        expected = tok.encode(expected_x)
    return {"root": root, "expected": expected}


@pytest.fixture(autouse=True)
def _local_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _run(env, data, out, *extra, workers="0"):
    return main(["-t", env["tok"], "--data", str(data), "-o", str(out), "--shard-size", "4", "--batch-size", "3",
                 "--num-workers", workers, "--quiet", *extra])


def _check(out, expected, labels):
    ds = ShardDataset(out)
    assert ds.keys == [row_key(i) for i in range(N)]  # stable: the row index
    got = torch.stack([ds[i]["tokens"] for i in range(N)])
    assert torch.equal(got, expected)
    assert [ds[i]["label"] for i in range(N)] == labels
    assert read_manifest(out)["totals"]["failed"] == 0 and verify(out) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_save_to_disk_image_column(shard_env, hf_env, tmp_path, workers):
    out = tmp_path / "out"
    assert _run(shard_env, hf_env["root"] / "saved", out, "--column", "img", "--label-column", "y", workers=workers) == 0
    _check(out, hf_env["expected"], [NAMES[i % 3] for i in range(N)])
    m = read_manifest(out)
    assert m["source"]["format"] == "disk" and m["source"]["column"] == "img"
    assert _run(shard_env, hf_env["root"] / "saved", out, "--column", "img", "--label-column", "y") == 0  # resume no-op


def test_parquet_folder_is_detected(shard_env, hf_env, tmp_path):
    out = tmp_path / "out"
    assert _run(shard_env, hf_env["root"] / "pq", out, "--column", "img", "--label-column", "y") == 0
    _check(out, hf_env["expected"], [NAMES[i % 3] for i in range(N)])
    assert read_manifest(out)["source"]["format"] == "parquet"


def test_imagefolder_builder(shard_env, hf_env, tmp_path):
    out = tmp_path / "out"
    assert _run(shard_env, hf_env["root"] / "if", out, "--data-format", "imagefolder", "--label-column", "label") == 0
    keys = sorted(p.relative_to(hf_env["root"] / "if").as_posix() for p in (hf_env["root"] / "if").rglob("*.png"))
    ds = ShardDataset(out)
    labels = [ds[i]["label"] for i in range(N)]
    assert sorted(labels) == sorted(k.split("/")[0] for k in keys)
    # imagefolder row order is its own; tokens must match encode of the row's image, label included
    tok = load_tokenizer(shard_env["tok"]).eval()
    x = torch.stack([read_image(hf_env["root"] / "if" / k) for k in keys])
    with torch.inference_mode():
        enc = tok.encode(x)
    by_label = {}
    for k, e in zip(keys, enc):
        by_label.setdefault(k.split("/")[0], []).append(e)
    for i in range(N):
        assert any(torch.equal(ds[i]["tokens"], e) for e in by_label[labels[i]])


def test_audio_column_decoded_without_torchcodec(tmp_path):
    atok = AudioTokenizer().eval()
    atok.save_pretrained(tmp_path / "atok")
    sr = atok.config.sample_rate
    wav = sample_audio(3, 0.25, sr, seed=0)
    (tmp_path / "wav").mkdir()
    for i in range(3):
        write_audio(tmp_path / "wav" / f"{i}.wav", wav[i], sr)
    files = [str(tmp_path / "wav" / f"{i}.wav") for i in range(3)]
    ds = datasets.Dataset.from_dict({"audio": files, "spk": ["x", "y", "x"]}).cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(tmp_path / "ads"))
    out = tmp_path / "out"
    assert main(["-t", str(tmp_path / "atok"), "--data", str(tmp_path / "ads"), "-o", str(out),
                 "--label-column", "spk", "--num-workers", "0", "--quiet"]) == 0
    sds = ShardDataset(out)
    assert sds.keys == [row_key(i) for i in range(3)] and [sds[i]["label"] for i in range(3)] == ["x", "y", "x"]
    with torch.inference_mode():
        expected = atok.encode(torch.stack([read_audio(f)[0] for f in files]))
    assert torch.equal(torch.stack([sds[i]["tokens"] for i in range(3)]), expected)
    t = pq.read_table(out / "data" / "train-00000.parquet")
    assert t["sample_rate"].to_pylist() == [sr] * 3 and t["duration"].to_pylist() == pytest.approx([0.25] * 3)
    assert read_manifest(out)["totals"]["failed"] == 0


def test_a_dataset_with_two_splits_needs_split(shard_env, tmp_path, capsys):
    """Issue 17 §2.6b: a two-split DatasetDict without --split is refused in one line listing the splits
    (it took `train` silently); --split picks one; a single-split dict needs none."""
    x = sample_images(4, 32, seed=1)
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in u8]},
                                    features=datasets.Features({"img": datasets.Image()}))
    datasets.DatasetDict({"train": ds.select(range(3)), "test": ds.select([3])}).save_to_disk(str(tmp_path / "two"))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "one"))
    capsys.readouterr()
    assert _run(shard_env, tmp_path / "two", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no --split given; it has 2 split(s) (train, test): pick one with --split" in err
    assert not (tmp_path / "out").exists()
    assert _run(shard_env, tmp_path / "two", tmp_path / "out", "--split", "test") == 0
    assert len(ShardDataset(tmp_path / "out")) == 1 and read_manifest(tmp_path / "out")["source"]["split"] == "test"
    assert _run(shard_env, tmp_path / "one", tmp_path / "one_out") == 0 and len(ShardDataset(tmp_path / "one_out")) == 4
