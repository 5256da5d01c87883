"""`fsqtok` encode/decode/reconstruct: the defects of issue 10 (tokens, lost data, exit codes), one test each."""

import hashlib
import json
import shutil
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import fsqtok
from fsqtok import files, hub, media
from fsqtok.cli import main, output_names
from fsqtok.tokenizers import AudioTokenizer, ImageConfig, ImageTokenizer


@pytest.fixture(scope="module")
def image_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "image"
    ImageTokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def audio_tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "audio"
    AudioTokenizer().save_pretrained(path)
    return path


def _image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    media.write_image(str(path), torch.rand(3, 16, 24, generator=torch.Generator().manual_seed(seed)) * 2 - 1)
    return str(path)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


# ---------------------------------------------------------------- item 1: non-finite latents


def test_nan_weights_fail_encode_naming_the_input(tmp_path, capsys):
    tok = ImageTokenizer()
    with torch.no_grad():
        next(tok.encoder.parameters()).fill_(float("nan"))
    tok.save_pretrained(tmp_path / "nan")
    photo = _image(tmp_path / "photo.png")
    out = tmp_path / "t.safetensors"
    code, _, err = run(["encode", "-t", tmp_path / "nan", photo, "-o", out], capsys)
    assert code == 1 and _one_line(err) and err.startswith(f"error: {photo}: ")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["nan", "photo.png"]


# ---------------------------------------------------------------- item 4: the tokenizer's channel count


def test_grey_tokenizer_encodes_colour_and_grey_files(tmp_path, capsys):
    grey = tmp_path / "grey"
    tok = ImageTokenizer(ImageConfig(in_channels=1))
    tok.save_pretrained(grey)
    colour = _image(tmp_path / "colour.png")
    mono = tmp_path / "mono.png"
    media.write_image(str(mono), torch.rand(1, 16, 24) * 2 - 1)
    tokens = tmp_path / "t.safetensors"
    code, _, err = run(["encode", "-t", grey, colour, mono, "-o", tokens], capsys)
    assert code == 0, err
    t = load_file(tokens)
    for i, path in enumerate([colour, str(mono)]):
        assert torch.equal(t[f"tokens.{i}"], tok.encode(media.read_image(path, channels=1)[None]))
    assert run(["decode", "-t", grey, tokens, "-o", tmp_path / "out"], capsys)[0] == 0
    assert media.read_image(str(tmp_path / "out" / "colour.png"), channels=1).shape == (1, 16, 24)
    code, _, err = run(["reconstruct", "-t", grey, colour, "-o", tmp_path / "rec.png"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------- item 6: tokens are tied to the weights


def test_tokens_are_tied_to_the_weights_not_the_config_or_version(image_tok, tmp_path, capsys, monkeypatch):
    photo = _image(tmp_path / "photo.png")
    tokens = tmp_path / "t.safetensors"
    assert run(["encode", "-t", image_tok, photo, "-o", tokens], capsys)[0] == 0
    twin = tmp_path / "twin"  # same config, other weights
    ImageTokenizer(ImageConfig()).save_pretrained(twin)
    code, _, err = run(["decode", "-t", twin, tokens, "-o", tmp_path / "r.png"], capsys)
    assert code == 1 and _one_line(err) and "decode with the tokenizer that encoded them" in err
    moved = tmp_path / "moved"  # the same weights elsewhere, read by a newer fsqtok
    shutil.copytree(image_tok, moved)
    monkeypatch.setattr(fsqtok.version, "__version__", "0.1.1")
    code, _, err = run(["decode", "-t", moved, tokens, "-o", tmp_path / "r.png"], capsys)
    assert code == 0, err


def test_token_files_from_before_weights_hashes_still_decode(image_tok, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png")
    tokens = tmp_path / "t.safetensors"
    assert run(["encode", "-t", image_tok, photo, "-o", tokens], capsys)[0] == 0
    with safe_open(str(tokens), framework="pt") as f:
        meta = json.loads(f.metadata()["fsqtok"])
    tok = ImageTokenizer.from_pretrained(image_tok)
    old_config = {"modality": "image", "fsqtok_version": fsqtok.__version__, **tok.config.to_dict()}
    meta.pop("weights_sha256")
    meta["config_hash"] = hashlib.sha256(json.dumps(old_config, sort_keys=True).encode()).hexdigest()[:16]
    save_file(load_file(tokens), tokens, metadata={"fsqtok": json.dumps(meta)})
    assert run(["decode", "-t", image_tok, tokens, "-o", tmp_path / "r.png"], capsys)[0] == 0
    meta["config_hash"] = "0" * 16
    save_file(load_file(tokens), tokens, metadata={"fsqtok": json.dumps(meta)})
    code, _, err = run(["decode", "-t", image_tok, tokens, "-o", tmp_path / "r.png"], capsys)
    assert code == 1 and "(config 0000000000000000)" in err


# ---------------------------------------------------------------- item 9: same stems


def test_decode_into_a_folder_keeps_items_with_the_same_stem(image_tok, tmp_path, capsys):
    inputs = [_image(tmp_path / "x1/pic.png", 1), _image(tmp_path / "x2/pic.png", 2), _image(tmp_path / "x1/pic.jpg", 3),
              _image(tmp_path / "x1/other.png", 4)]
    tokens = tmp_path / "t.safetensors"
    assert run(["encode", "-t", image_tok, *inputs, "-o", tokens], capsys)[0] == 0
    code, out, err = run(["decode", "-t", image_tok, tokens, "-o", tmp_path / "out"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["other.png", "pic-0.png", "pic-1.png", "pic-2.png"]
    tok = ImageTokenizer.from_pretrained(image_tok)
    for i, name in enumerate(["pic-0.png", "pic-1.png", "pic-2.png"]):
        x = media.read_image(inputs[i])[None]
        expected = tok.decode(tok.encode(x), input_shape=x.shape)[0].clamp(-1, 1)
        assert (media.read_image(str(tmp_path / "out" / name)) - expected).abs().max() <= 1.01 / 127.5


def test_output_names_are_unique():
    assert output_names(["a.png", "b.png"], ".png") == ["a.png", "b.png"]
    assert output_names(["x/a.png", "y/a.png", "a-1.png"], ".png") == ["a-0.png", "a-1.png", "a-1-2.png"]


# ---------------------------------------------------------------- item 13: exit codes and messages


@pytest.mark.parametrize("argv_tail,match", [
    (["--num-stages", "9"], "--num-stages 9: the tokenizer has 4 stage"),
    (["--num-stages", "0"], "must be >= 1, got 0"),
    (["--device", "bogus"], "not a torch device: 'bogus'"),
])
def test_reconstruct_bad_arguments_exit_2_before_reading(audio_tok, tmp_path, capsys, argv_tail, match):
    missing = tmp_path / "missing.wav"  # never read: the argument error comes first
    code, _, err = run(["reconstruct", "-t", audio_tok, missing, "-o", tmp_path / "r.wav", *argv_tail], capsys)
    assert code == 2 and _one_line(err) and match in err


@pytest.mark.parametrize("fps,match", [("0", "must be > 0, got 0"), ("nan", "must be a finite number"),
                                       ("-2", "must be > 0"), ("abc", "expected a number")])
def test_fps_must_be_a_positive_number(image_tok, tmp_path, capsys, fps, match):
    code, _, err = run(["encode", "-t", image_tok, tmp_path / "v.mp4", "-o", tmp_path / "t.safetensors",
                        "--fps", fps], capsys)
    assert code == 2 and _one_line(err) and "--fps" in err and match in err


def test_reconstruct_output_type_is_checked_before_work(image_tok, tmp_path, capsys):
    code, _, err = run(["reconstruct", "-t", image_tok, tmp_path / "missing.png", "-o", tmp_path / "x.txt"], capsys)
    assert code == 2 and _one_line(err) and "cannot write image as .txt" in err


def test_decode_num_stages_checked_against_the_tokenizer(audio_tok, tmp_path, capsys):
    src = tmp_path / "a.wav"
    media.write_audio(str(src), torch.randn(1, 3200) * 0.1, 16000)
    tokens = tmp_path / "t.safetensors"
    assert run(["encode", "-t", audio_tok, src, "-o", tokens], capsys)[0] == 0
    code, _, err = run(["decode", "-t", audio_tok, tokens, "-o", tmp_path / "r.wav", "--num-stages", "9"], capsys)
    assert code == 2 and "--num-stages 9" in err and not (tmp_path / "r.wav").exists()


@pytest.mark.parametrize("source", ["some/config.json", "runs/tokenizr", "./nope", "a/b/c"])
def test_local_looking_tokenizer_paths_are_usage_errors_at_once(tmp_path, capsys, monkeypatch, source):
    def no_hub(**kwargs):
        raise AssertionError("went to the Hub")

    monkeypatch.setattr(hub, "hf_hub_download", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    start = time.monotonic()
    code, _, err = run(["info", source], capsys)
    assert code == 2 and _one_line(err) and f"argument T: {source}: no such folder" in err
    assert time.monotonic() - start < 5


def test_a_file_as_tokenizer_is_a_usage_error(image_tok, capsys):
    code, _, err = run(["info", image_tok / "config.json"], capsys)
    assert code == 2 and "a file; pass the folder that holds config.json" in err


def test_broken_tokenizer_folders_name_the_file(image_tok, tmp_path, capsys):
    truncated = tmp_path / "truncated"
    shutil.copytree(image_tok, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run(["info", truncated], capsys)
    assert code == 1 and _one_line(err) and f"{weights}: not a readable safetensors file" in err
    listed = tmp_path / "listed"
    shutil.copytree(image_tok, listed)
    config = json.loads((listed / "config.json").read_text())
    config.update(modality=["image"])
    (listed / "config.json").write_text(json.dumps(config))
    code, _, err = run(["info", listed], capsys)
    assert code == 1 and _one_line(err) and err.startswith(f"error: {listed}: config.json: modality ['image']")


def test_out_of_range_tokens_name_the_tokens_file(image_tok, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png")
    tokens = tmp_path / "t.safetensors"
    assert run(["encode", "-t", image_tok, photo, "-o", tokens], capsys)[0] == 0
    with safe_open(str(tokens), framework="pt") as f:
        metadata = f.metadata()
    t = load_file(tokens)
    t["tokens.0"][0, 0, 0] = 1000
    save_file(t, tokens, metadata=metadata)
    code, _, err = run(["decode", "-t", image_tok, tokens, "-o", tmp_path / "r.png"], capsys)
    assert code == 1 and _one_line(err) and f"{tokens}: item 0 (photo.png)" in err and "[0, 1000)" in err


def test_encode_to_a_folder_named_like_a_file_leaves_nothing(image_tok, tmp_path, capsys):
    photo = _image(tmp_path / "photo.png")
    (tmp_path / "existing.safetensors").mkdir()
    code, _, err = run(["encode", "-t", image_tok, photo, "-o", tmp_path / "existing.safetensors"], capsys)
    assert code == 2 and _one_line(err) and "is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.safetensors", "photo.png"]
    assert list((tmp_path / "existing.safetensors").iterdir()) == []


def test_a_failed_rename_leaves_no_temporary_file(image_tok, tmp_path, capsys, monkeypatch):
    photo = _image(tmp_path / "photo.png")

    def full_disk(source, target):
        raise OSError(f"{target}: no space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    code, _, err = run(["encode", "-t", image_tok, photo, "-o", tmp_path / "t.safetensors"], capsys)
    assert code == 1 and "no space left" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


# ---------------------------------------------------------------- --debug / --device in every position


@pytest.mark.parametrize("argv", [
    ["--device", "cpu", "info", "{tok}"], ["info", "{tok}", "--device", "cpu"], ["info", "--device=cpu", "{tok}"],
    ["--debug", "info", "{tok}"], ["info", "{tok}", "--debug"],
])
def test_global_options_in_every_position(image_tok, capsys, argv):
    code, out, err = run([a.format(tok=image_tok) for a in argv], capsys)
    assert code == 0 and "image" in out, err


@pytest.mark.parametrize("position", ["before", "after"])
def test_device_and_debug_reach_the_subcommand(image_tok, tmp_path, capsys, position):
    extra = ["--device", "bogus"]
    argv = [*extra, "info", image_tok] if position == "before" else ["info", image_tok, *extra]
    code, _, err = run(argv, capsys)
    assert code == 2 and "not a torch device" in err
    missing = tmp_path / "none.safetensors"
    argv = ["decode", "-t", image_tok, missing, "-o", tmp_path / "r.png"]
    with pytest.raises(FileNotFoundError, match="no such tokens file"):  # --debug re-raises
        main([str(a) for a in (["--debug", *argv] if position == "before" else [*argv, "--debug"])])


@pytest.mark.parametrize("position", ["before", "after"])
def test_the_device_reaches_the_tokenizer(image_tok, capsys, monkeypatch, position):
    import fsqtok.cli as cli

    seen = []
    real_load = cli._load
    monkeypatch.setattr(cli, "_load", lambda source, device: seen.append(device) or real_load(source, device))
    argv = ["--device", "cpu:0", "info", image_tok] if position == "before" else ["info", image_tok, "--device", "cpu:0"]
    assert run(argv, capsys)[0] == 0 and seen == ["cpu:0"]
