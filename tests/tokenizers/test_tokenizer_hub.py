"""Hub save/load: local round trips, offline Hub cache, strict loading, model cards, push_to_hub."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import fsqtok
from fsqtok.tokenizers import (
    AudioConfig,
    AudioTokenizer,
    CheckpointError,
    ConfigError,
    DepthTokenizer,
    ImageTokenizer,
    Tokenizer,
    VideoConfig,
    VideoTokenizer,
    load_tokenizer,
)

SRC = Path(fsqtok.__file__).resolve().parents[1]

CASES = {
    "image": (ImageTokenizer, lambda: torch.rand(1, 3, 24, 40) * 2 - 1),
    "depth": (DepthTokenizer, lambda: torch.rand(1, 1, 24, 40) * 10),
    "audio": (AudioTokenizer, lambda: torch.randn(1, 1, 3000) * 0.2),
    "video": (VideoTokenizer, lambda: torch.rand(1, 3, 5, 16, 16) * 2 - 1),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved folder per modality, with the input and the tokens it gave."""
    torch.manual_seed(0)
    out = {}
    for modality, (cls, make) in CASES.items():
        tok = cls().eval()
        x = make()
        folder = tmp_path_factory.mktemp(modality)
        tok.save_pretrained(folder)
        out[modality] = (tok, x, tok.encode(x), folder)
    return out


@pytest.mark.parametrize("modality", list(CASES))
def test_local_round_trip_gives_identical_tokens(saved, modality):
    tok, x, idx, folder = saved[modality]
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    for loader in (type(tok).from_pretrained, load_tokenizer, fsqtok.load_tokenizer, Tokenizer.from_pretrained):
        loaded = loader(folder)
        assert type(loaded) is type(tok) and loaded.config == tok.config and not loaded.training
        assert torch.equal(loaded.encode(x), idx)
    state, loaded_state = tok.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys() and all(torch.equal(state[k], loaded_state[k]) for k in state)


@pytest.mark.parametrize("modality", list(CASES))
def test_config_json_and_model_card(saved, modality):
    tok, _, _, folder = saved[modality]
    config = json.loads((folder / "config.json").read_text())
    assert config["modality"] == modality and config["fsqtok_version"] == fsqtok.__version__
    assert config["model_type"] == f"{modality}_tokenizer"
    meta = ("modality", "fsqtok_version", "model_type")
    assert {k: v for k, v in config.items() if k not in meta} == tok.config.to_dict()
    card = (folder / "README.md").read_text()
    assert "library_name: fsqtok" in card and f"# fsqtok {modality} tokenizer" in card
    assert tok.summary()["compression"] in card
    assert ("bitrate bps" if modality == "audio" else "bits per pixel") in card


def test_non_default_config_round_trip(tmp_path):
    cfg = VideoConfig(quantizer="rfsq", num_stages=2, levels=(8, 5, 5, 5), latent_channels=6, base_channels=4,
                      temporal_downsample=(True, False, True), mid_attention=True)
    tok = VideoTokenizer(cfg).eval()
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.config == cfg
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert torch.equal(loaded.encode(x), tok.encode(x))


def _copy(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in folder.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_missing_weight_is_an_error(saved, tmp_path):
    folder = _copy(saved["image"][3], tmp_path / "m")
    state = load_file(folder / "model.safetensors")
    del state["decoder.conv_out.bias"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing: decoder.conv_out.bias"):
        ImageTokenizer.from_pretrained(folder)


def test_unexpected_weight_is_an_error(saved, tmp_path):
    folder = _copy(saved["audio"][3], tmp_path / "u")
    state = load_file(folder / "model.safetensors")
    state["extra.weight"] = torch.zeros(3)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected: extra.weight"):
        load_tokenizer(folder)


def test_weights_for_another_config_are_an_error(saved, tmp_path):
    folder = _copy(saved["image"][3], tmp_path / "s")
    config = json.loads((folder / "config.json").read_text())
    config["base_channels"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_tokenizer(folder)


@pytest.mark.parametrize(
    "edit,match",
    [
        ({"levels": [1, 5]}, r"ImageConfig.levels"),
        ({"quantizer": "pq"}, r"ImageConfig.quantizer: must be one of"),
        ({"num_stages": 3}, r"ImageConfig.num_stages: must be 1 for quantizer='fsq'"),
        ({"channel_mult": []}, r"ImageConfig.channel_mult"),
        ({"base_chanels": 8}, r"unknown field\(s\) base_chanels"),
        ({"modality": "speech"}, r"modality 'speech' does not match model_type 'image_tokenizer'"),
        ({"modality": ["image"]}, r"modality \['image'\] does not match"),
        ({"model_type": "speech_tokenizer"}, r"unknown model_type 'speech_tokenizer'"),
    ],
)
def test_invalid_config_json_is_rejected(saved, tmp_path, edit, match):
    folder = _copy(saved["image"][3], tmp_path / "c")
    config = json.loads((folder / "config.json").read_text())
    config.update(edit)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=match) as info:
        load_tokenizer(folder)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(folder))


def test_wrong_modality_class_is_an_error(saved):
    with pytest.raises(CheckpointError, match="is for a 'image_tokenizer' model \\(ImageTokenizer\\), not AudioTokenizer"):
        AudioTokenizer.from_pretrained(saved["image"][3])


@pytest.mark.parametrize("modality", list(CASES))
def test_folder_from_before_model_types_still_loads(saved, tmp_path, modality):
    """Folders saved by fsqtok 0.1.0: config.json without model_type, weights metadata with modality/version."""
    tok, x, idx, folder = saved[modality]
    old = _copy(folder, tmp_path / "old")
    config = json.loads((old / "config.json").read_text())
    del config["model_type"]
    (old / "config.json").write_text(json.dumps(config))
    save_file(load_file(old / "model.safetensors"), old / "model.safetensors",
              metadata={"format": "pt", "modality": modality, "fsqtok_version": "0.1.0"})
    for loader in (load_tokenizer, fsqtok.load_pretrained, type(tok).from_pretrained):
        loaded = loader(old)
        assert type(loaded) is type(tok) and torch.equal(loaded.encode(x), idx)
        assert loaded.weights_hash() == tok.weights_hash()


def test_residual_folders_from_before_the_stage_scale_keep_their_tokens(saved, tmp_path):
    """Residual tokenizers saved before ``residual_stage_scale`` existed used scale L^-i ("levels"):
    loaded without the field they keep it, so their tokens decode as before; new folders record "grid"."""
    tok, x, _, folder = saved["audio"]
    assert tok.config.quantizer == "rfsq" and json.loads((folder / "config.json").read_text())["residual_stage_scale"] == "grid"
    legacy = AudioTokenizer(AudioConfig(residual_stage_scale="levels")).eval()
    legacy.load_state_dict(tok.state_dict())
    old = tmp_path / "old"
    legacy.save_pretrained(old)
    config = json.loads((old / "config.json").read_text())
    del config["residual_stage_scale"]
    (old / "config.json").write_text(json.dumps(config))
    loaded = load_tokenizer(old)
    assert loaded.config.residual_stage_scale == "levels"
    idx = legacy.encode(x)
    assert torch.equal(loaded.encode(x), idx) and torch.equal(loaded.decode(idx), legacy.decode(idx))
    assert not torch.equal(tok.encode(x), idx)  # [8, 5, 5, 5]: even levels, so the two scales differ


def test_pickled_weights_are_never_loaded(saved, tmp_path):
    folder = _copy(saved["image"][3], tmp_path / "p")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors only"):
        load_tokenizer(folder)


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_tokenizer(tmp_path)


def test_repo_id_from_offline_hub_cache(saved, tmp_path):
    """A repo id resolves from a pre-filled cache with HF_HUB_OFFLINE=1 (constants are read at import: subprocess)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--fsqtok-test--tiny-audio"
    snapshot = repo / "snapshots" / commit
    snapshot.parent.mkdir(parents=True)
    _copy(saved["audio"][3], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    tok, x, idx, _ = saved["audio"]
    torch.save({"x": x, "idx": idx}, tmp_path / "io.pt")
    script = f"""
import torch, fsqtok
from fsqtok.tokenizers import AudioTokenizer
io = torch.load({str(tmp_path / 'io.pt')!r})
tok = fsqtok.load_tokenizer("fsqtok-test/tiny-audio")
assert type(tok) is AudioTokenizer, type(tok)
assert torch.equal(tok.encode(io["x"]), io["idx"])
assert torch.equal(AudioTokenizer.from_pretrained("fsqtok-test/tiny-audio").encode(io["x"]), io["idx"])
try:
    fsqtok.load_tokenizer("fsqtok-test/not-in-cache")
except FileNotFoundError as e:  # one line naming the repo, why and the fix (not huggingface_hub's text)
    print("MISSING", type(e).__name__, str(e))
print("OK")
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout
    missing = next(line for line in result.stdout.splitlines() if line.startswith("MISSING"))
    assert missing == ("MISSING FileNotFoundError fsqtok-test/not-in-cache: no such local folder, and Hub repo "
                       "fsqtok-test/not-in-cache has no config.json in the Hub cache (HF_HUB_OFFLINE is set); pass a "
                       "local folder, or download the repo once online")


def test_push_to_hub_uploads_the_saved_folder(saved, fake_hub):
    """push_to_hub goes through the mixin: same files as save_pretrained (the Hub API is faked, no network)."""
    tok = saved["depth"][0]
    tok.push_to_hub("someone/tiny-depth")
    repo = fake_hub / "someone/tiny-depth"
    assert sorted(os.listdir(repo)) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((repo / "config.json").read_text())["modality"] == "depth"


def test_config_must_match_the_class():
    with pytest.raises(TypeError, match="config must be AudioConfig, got VideoConfig"):
        AudioTokenizer(VideoConfig())
    assert AudioTokenizer(AudioConfig(num_stages=2)).num_stages == 2
