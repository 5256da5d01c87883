"""scripts/uvim_predict.py writes valid files for every task; scripts/evaluate_uvim.py writes JSON + Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fsqtok.generative.uvim.stage1 import UViMConfig, UViMStage1
from fsqtok.generative.uvim.lm import UViMLM, UViMLMConfig
from script_utils import load_script

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(image_size=16, width=8, blocks=1, feature_down=1, code_grid=2)


@pytest.fixture(scope="module")
def predict():
    return load_script("uvim_predict")


def save_models(root: Path, task: str, **fields) -> Path:
    torch.manual_seed(0)
    s1 = UViMStage1(UViMConfig(task=task, **SMALL, **fields)).eval()
    if s1.config.no_code:
        s1.save_pretrained(root / "s1")
        return root / "s1"
    lm = UViMLM(UViMLMConfig.for_stage1(s1, "stage1", width=16, encoder_layers=1, decoder_layers=1, heads=2))
    lm.attach_stage1(s1).save_pretrained(root / "lm")
    return root / "lm"


def photo(path: Path, h: int = 21, w: int = 30) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_depth_png_and_npy(tmp_path, predict, capsys):
    model, img = save_models(tmp_path, "depth"), photo(tmp_path / "in.png")
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "d.png")]) == 0
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I;16") or im.mode == "I"
        mm = np.asarray(im)
    assert mm.shape == (21, 30) and mm.min() >= 100 and mm.max() <= 30000  # within the model's 0.1-30 m range
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "d.npy")]) == 0
    m = np.load(tmp_path / "d.npy")
    assert m.dtype == np.float32 and m.shape[-2:] == (21, 30)
    assert np.allclose(m.squeeze() * 1000, mm, atol=0.51)  # the same prediction in both formats


def test_colorization_png(tmp_path, predict):
    model, img = save_models(tmp_path, "colorization"), photo(tmp_path / "in.jpg")
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "c.png")]) == 0
    with Image.open(tmp_path / "c.png") as im:
        assert im.mode == "RGB" and im.size == (30, 21)


def test_panoptic_id_map_and_overlay(tmp_path, predict):
    model, img = save_models(tmp_path, "panoptic", num_classes=4, max_instances=3), photo(tmp_path / "in.png")
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "p.png")]) == 0
    with Image.open(tmp_path / "p.png") as im:
        ids = np.asarray(im).astype(np.int64)
    assert ids.shape == (21, 30)
    cls, inst = ids // 256, ids % 256
    assert cls.max() < 4 and inst.max() <= 3 and (inst[cls == 0] == 0).all()
    with Image.open(tmp_path / "p_overlay.png") as im:
        assert im.mode == "RGB" and im.size == (30, 21)


def test_no_code_stage1_predicts_and_a_coded_stage1_is_refused(tmp_path, predict, capsys):
    img = photo(tmp_path / "in.png")
    nc = save_models(tmp_path / "nc", "depth", no_code=True)
    assert predict.main(["--model", str(nc), str(img), "-o", str(tmp_path / "d.npy")]) == 0
    coded = save_models(tmp_path / "c", "depth") / "stage1"
    assert predict.main(["--model", str(coded), str(img), "-o", str(tmp_path / "e.npy")]) == 1
    assert "needs a guide code" in capsys.readouterr().err


def test_bad_arguments(tmp_path, predict, capsys):
    model, img = save_models(tmp_path, "depth"), photo(tmp_path / "in.png")
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "d.jpg")]) == 2
    assert "writes .png or .npy" in capsys.readouterr().err
    assert predict.main(["--model", str(model), str(tmp_path / "missing.png"), "-o", str(tmp_path / "d.png")]) == 1
    assert not (tmp_path / "d.png").exists()
    assert predict.main([str(img), "-o", "x.png"]) == 2
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "d.png"), "--code-tokens", "9"]) == 2
    assert "--code-tokens needs a stage-II model and 1..4" in capsys.readouterr().err


def test_predict_from_a_code_prefix(tmp_path, predict):
    model, img = save_models(tmp_path, "depth"), photo(tmp_path / "in.png")
    for k, name in ((1, "a.npy"), (4, "b.npy")):
        assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / name), "--code-tokens", str(k)]) == 0
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "c.npy")]) == 0
    a, b, c = (np.load(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy"))
    assert np.array_equal(b, c)  # all 4 tokens of this 2x2 code = the whole code
    assert a.shape == c.shape and not np.array_equal(a, c)  # 3 of 4 tokens dropped: another prediction


def test_evaluate_uvim_writes_json_and_markdown(tmp_path):
    evaluate = load_script("evaluate_uvim")
    model = save_models(tmp_path, "depth")
    out = tmp_path / "eval"
    assert evaluate.main(["--model", f"m={model}", "--model", str(model / "stage1"), "--num", "4", "--real",
                          "--output-dir", str(out)]) == 0
    res = json.loads((out / "eval.json").read_text())["results"]
    assert set(res) == {"m", "stage1"}
    assert set(res["m"]) == {"synthetic test", "real motorcycle", "real castel"}
    lm = res["m"]["synthetic test"]["lm"]
    assert {"rmse", "abs_rel", "delta1", "codebook_usage", "token_accuracy"} <= set(lm)
    assert res["stage1"]["synthetic test"]["oracle"]["rmse"] == res["m"]["synthetic test"]["oracle"]["rmse"]
    assert "| m | real castel | lm |" in (out / "eval.md").read_text()
    assert evaluate.main(["--model", f"m={model}", "--num", "4", "--code-tokens", "2", "--output-dir", str(out)]) == 0
    res = json.loads((out / "eval.json").read_text())["results"]["m"]["synthetic test"]
    assert set(res) == {"lm", "oracle", "lm_first2", "oracle_first2"} and res["lm_first2"]["rmse"] != res["lm"]["rmse"]
    assert evaluate.main(["--model", str(model), "--num", "4", "--code-tokens", "5", "--output-dir", str(out)]) == 2


def test_predict_refuses_to_write_over_the_photo_and_creates_the_output_folder(tmp_path, predict, capsys):
    """Issue 17 §2.11: -o = the input is refused before any work (the photo was replaced); a missing output
    folder is created (it was reported as 'd.png: no such file', like a missing input)."""
    model, img = save_models(tmp_path, "colorization"), photo(tmp_path / "in.png")
    before = img.read_bytes()
    assert predict.main(["--model", str(model), str(img), "-o", str(img)]) == 2
    assert "is the input" in capsys.readouterr().err and img.read_bytes() == before
    assert predict.main(["--model", str(model), str(img), "-o", str(tmp_path / "new" / "c.png")]) == 0
    assert (tmp_path / "new" / "c.png").is_file()


def test_a_wide_photo_is_predicted_at_the_training_crop_not_squashed(tmp_path, predict):
    """Issue 17 §2.11: prediction uses fsqtok.data's fitting (a square of the short side, as training's centre
    crop) over covering squares; the left columns that only the first square covers equal its prediction."""
    from fsqtok.data import Box

    torch.manual_seed(0)
    s1 = UViMStage1(UViMConfig(task="depth", no_code=True, **SMALL)).eval()
    image = torch.rand(3, 16, 40) * 2 - 1
    assert Box.covering(16, 40) == [Box(0, 0, 16), Box(0, 12, 16), Box(0, 24, 16)]
    assert Box.covering(40, 16)[-1] == Box(24, 0, 16) and Box.covering(16, 16) == [Box(0, 0, 16)]
    pred = predict.predict(s1, None, image)
    assert pred.shape == (1, 16, 40)
    first = s1.predict(image[None, :, :, :16])[0]
    assert torch.allclose(pred[..., :12], first[..., :12], atol=1e-6)
    last = s1.predict(image[None, :, :, 24:])[0]
    assert torch.allclose(pred[..., 28:], last[..., 4:], atol=1e-6)
    square = torch.rand(3, 16, 16) * 2 - 1
    assert torch.allclose(predict.predict(s1, None, square), s1.predict(square[None])[0], atol=1e-6)


def test_evaluate_uvim_scores_held_out_pairs_of_your_own(tmp_path, capsys):
    """Issue 17 §2.6d: --pairs DIR scores the user's pairs (fsqtok.data's paired folder source, centre crops),
    names them by content in eval.json, and refuses pairs the model was trained on."""
    from fsqtok.data import data_fingerprint
    from fsqtok.datasets.uvim_pairs import UViMFolderPairs
    from fsqtok.generative.uvim.evaluation import evaluate as score
    from fsqtok.generative.uvim.lm import UViMPipeline
    from fsqtok.media import write_depth, write_image

    data = tmp_path / "held"
    for sub in ("image", "depth"):
        (data / sub).mkdir(parents=True)
    for k in range(3):
        write_image(data / "image" / f"{k}.png", torch.rand(3, 20, 24) * 2 - 1)
        write_depth(data / "depth" / f"{k}.npy", torch.full((1, 20, 24), 1.0 + k))
    evaluate = load_script("evaluate_uvim")
    model, out = save_models(tmp_path, "depth"), tmp_path / "eval"
    assert evaluate.main(["--model", f"m={model}", "--pairs", f"mine={data}", "--num", "0",
                          "--output-dir", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert set(report["results"]["m"]) == {"pairs mine"} and report["data"] == {"pairs mine": data_fingerprint(data)}
    pipe = UViMPipeline.from_pretrained(model)
    ds = UViMFolderPairs("depth", str(data), 16, train=False)
    items = [ds[i] for i in range(3)]
    want = score(pipe.stage1, [{"image": torch.stack([i["image"] for i in items]),
                                "target": torch.stack([i["target"] for i in items])}], "lm", pipe.lm)
    assert report["results"]["m"]["pairs mine"]["lm"] == pytest.approx(want)
    pipe.lm.trained_on = {"train_data": data_fingerprint(data)}
    pipe.lm.save_pretrained(tmp_path / "trained")
    capsys.readouterr()
    assert evaluate.main(["--model", str(tmp_path / "trained"), "--pairs", str(data), "--num", "0",
                          "--output-dir", str(out)]) == 1
    assert "the model was trained on these pairs" in capsys.readouterr().err
