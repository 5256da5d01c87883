"""fsqtok.hub: any registered model type round-trips, loads strictly, hashes its weights, and works offline."""

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dummy_model import DummyConfig, DummyModel
from safetensors.torch import load_file, save_file

import fsqtok
from fsqtok import hub
from fsqtok.hub import CheckpointError, ConfigError, HubMixin, load_pretrained, register_model_type
from fsqtok.tokenizers import ImageTokenizer, Tokenizer

HERE = Path(__file__).resolve().parent
SRC = Path(fsqtok.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """A private copy of the registry with the dummy registered by its import path (lazy, as MaskGIT will be)."""
    monkeypatch.setattr(hub, "MODEL_TYPES", dict(hub.MODEL_TYPES))
    register_model_type("hub_test_dummy", "dummy_model:DummyModel")
    return hub.MODEL_TYPES


@pytest.fixture
def saved(tmp_path):
    model = DummyModel(DummyConfig(vocab=13, dim=5))
    with torch.no_grad():
        model.scale.fill_(0.25)
    model.save_pretrained(tmp_path / "m")
    return model, tmp_path / "m"


def _edit_weights(folder: Path, edit) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


def test_round_trip_through_load_pretrained(saved):
    model, folder = saved
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    for loader in (load_pretrained, fsqtok.load_pretrained, DummyModel.from_pretrained, HubMixin.from_pretrained):
        loaded = loader(folder)
        assert type(loaded) is DummyModel and loaded.config == model.config and not loaded.training
        assert loaded.head.weight is loaded.embed.weight  # still tied after loading
        a, b = model.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        tokens = torch.randint(0, 13, (2, 7))
        assert torch.equal(loaded(tokens), model(tokens))


def test_files_on_disk(saved):
    model, folder = saved
    config = json.loads((folder / "config.json").read_text())
    assert config == {"model_type": "hub_test_dummy", "fsqtok_version": fsqtok.__version__, "vocab": 13, "dim": 5}
    assert set(load_file(folder / "model.safetensors")) == {"embed.weight", "mix.weight", "mix.bias", "scale"}
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: fsqtok" in card and "# dummy for tests" in card


def test_weights_hash_is_the_saved_file_and_only_the_weights(saved, tmp_path, monkeypatch):
    model, folder = saved
    digest = model.weights_hash()
    assert digest == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert load_pretrained(folder).weights_hash() == digest
    monkeypatch.setattr(fsqtok.version, "__version__", "9.9.9")  # a version bump does not change it
    model.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again/config.json").read_text())["fsqtok_version"] == "9.9.9"
    assert model.weights_hash() == digest == hashlib.sha256((tmp_path / "again/model.safetensors").read_bytes()).hexdigest()
    with torch.no_grad():
        model.mix.bias[0] = torch.nextafter(model.mix.bias[0], torch.tensor(9.0))  # one ulp
    assert model.weights_hash() != digest
    other = DummyModel(DummyConfig(vocab=13, dim=5))  # same config, other weights
    assert other.weights_hash() != digest


def test_tokenizer_weights_hash_matches_its_file(tmp_path):
    tok = ImageTokenizer()
    tok.save_pretrained(tmp_path)
    assert tok.weights_hash() == hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.pop("mix.bias"), r"missing: mix.bias"),
        (lambda s: s.update(extra=torch.zeros(2)), r"unexpected: extra"),
        (lambda s: s.update({"mix.bias": torch.zeros(6)}), r"shape mismatch: mix.bias"),
        (lambda s: s.update({"head.weight": s["embed.weight"].clone()}), r"unexpected: head.weight"),
    ],
)
def test_weights_must_match_exactly(saved, edit, match):
    _, folder = saved
    _edit_weights(folder, edit)
    with pytest.raises(CheckpointError, match=match) as info:
        load_pretrained(folder)
    assert str(info.value).startswith(str(folder)) and "\n" not in str(info.value)


def test_truncated_weights_name_the_file(saved):
    _, folder = saved
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=rf"^{path}: not a readable safetensors file"):
        load_pretrained(folder)


def test_pickles_are_never_loaded(saved):
    model, folder = saved
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="safetensors only"):
        load_pretrained(folder)


@pytest.mark.parametrize(
    "edit,error,match",
    [
        ({"model_type": "maskgitt"}, ConfigError, r"unknown model_type 'maskgitt'; expected one of .*hub_test_dummy"),
        ({"model_type": ["x"]}, ConfigError, r"unknown model_type \['x'\]"),
        ({"model_type": None, "vocab": 13}, ConfigError, r"unknown model_type None"),
        ({"dim": 0}, ConfigError, r"invalid config.json: DummyConfig.dim: expected an int >= 1"),
        ({"dims": 5}, ConfigError, r"invalid config.json: DummyConfig: unknown field\(s\) dims"),
        ({"model_type": "image_tokenizer"}, ConfigError, r"invalid config.json: ImageConfig: unknown field\(s\) dim"),
    ],
)
def test_config_json_is_checked(saved, edit, error, match):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config.update(edit)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(error, match=match) as info:
        load_pretrained(folder)
    assert str(info.value).startswith(str(folder)) and "\n" not in str(info.value)


def test_config_json_without_model_type(saved):
    _, folder = saved
    (folder / "config.json").write_text(json.dumps({"vocab": 13, "dim": 5}))
    with pytest.raises(ConfigError, match="no 'model_type'; not an fsqtok model"):
        load_pretrained(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold an object"):
        load_pretrained(folder)


def test_class_must_match_the_model_type(saved, tmp_path):
    _, folder = saved
    with pytest.raises(CheckpointError, match=r"is for a 'hub_test_dummy' model \(DummyModel\), not Tokenizer"):
        Tokenizer.from_pretrained(folder)
    ImageTokenizer().save_pretrained(tmp_path / "tok")
    with pytest.raises(CheckpointError, match=r"is for a 'image_tokenizer' model \(ImageTokenizer\), not DummyModel"):
        DummyModel.from_pretrained(tmp_path / "tok")
    assert type(load_pretrained(tmp_path / "tok")) is ImageTokenizer


def test_registry_rules(registry):
    register_model_type("hub_test_dummy", "dummy_model:DummyModel")  # same target again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_model_type("hub_test_dummy", DummyModel)
    with pytest.raises(ValueError, match="lower_snake_case"):
        register_model_type("Bad-Name", DummyModel)
    register_model_type("hub_test_wrong", DummyModel)  # the class declares another model_type
    with pytest.raises(TypeError, match="not a HubMixin class with that model_type"):
        hub.model_class("hub_test_wrong")
    assert hub.model_class("hub_test_dummy") is DummyModel


@pytest.mark.parametrize("source", ["./nope", "/abs/nope", "runs/a/tokenizer", "some/config.json", "tests/typo",
                                    "~/x", "a..b/c", "bad name"])
def test_local_looking_paths_fail_at_once_without_the_hub(monkeypatch, source):
    def no_hub(**kwargs):
        raise AssertionError(f"went to the Hub for {kwargs}")

    monkeypatch.setattr(hub, "hf_hub_download", no_hub)
    monkeypatch.chdir(HERE.parents[1])  # the repo root: "tests/" exists there
    with pytest.raises(FileNotFoundError, match=rf"^{source}: no such folder"):
        load_pretrained(source)


def test_repo_ids_go_to_the_hub(monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(hub, "hf_hub_download", lambda **kw: asked.append(kw["repo_id"]) or str(tmp_path / "nope"))
    monkeypatch.chdir(tmp_path)
    for repo_id in ("org/model-v1.0", "model_only"):
        with pytest.raises(FileNotFoundError):
            load_pretrained(repo_id)
    assert asked == ["org/model-v1.0", "model_only"]


def test_a_file_is_not_a_folder(saved):
    _, folder = saved
    with pytest.raises(FileNotFoundError, match=r"config.json: a file, not a folder"):
        load_pretrained(folder / "config.json")


def test_offline_hub_cache_loads_a_registered_type(saved, tmp_path):
    """A repo id resolves from a pre-filled cache with HF_HUB_OFFLINE=1 set before huggingface_hub is imported."""
    model, folder = saved
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "cache" / "models--fsqtok-test--dummy"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    script = """
import fsqtok
from fsqtok.hub import register_model_type
register_model_type("hub_test_dummy", "dummy_model:DummyModel")
m = fsqtok.load_pretrained("fsqtok-test/dummy")
assert type(m).__name__ == "DummyModel", type(m)
print(m.weights_hash())
try:
    fsqtok.load_pretrained("fsqtok-test/not-cached")
except FileNotFoundError as e:
    print("MISSING", type(e).__name__)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == model.weights_hash() and "MISSING" in result.stdout


def test_hub_layer_imports_no_model():
    """No import cycle: fsqtok.hub imports no model, and tokenizers/base.py imports no tokenizer subclass."""
    code = "import sys, fsqtok.hub; assert not [m for m in sys.modules if m.startswith('fsqtok.tokenizers')]"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tree = ast.parse((SRC / "fsqtok/tokenizers/base.py").read_text())
    imported = {(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    subclasses = {"image", "depth", "audio", "video"}
    assert not {m for level, m in imported if level == 1} & subclasses  # no tokenizer subclass (config.py is shared)


def test_a_repo_id_missing_from_the_cache_with_local_files_only_is_one_line(tmp_path):
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "local_files_only=True"
    with pytest.raises(FileNotFoundError) as e:
        DummyModel.from_pretrained("fsqtok-test/nowhere", local_files_only=True, cache_dir=tmp_path)
    assert str(e.value) == (f"fsqtok-test/nowhere: no such local folder, and Hub repo fsqtok-test/nowhere has no "
                            f"config.json in the Hub cache ({why}); pass a local folder, or download the repo once online")


def test_trained_on_is_written_kept_by_a_load_and_a_resave_and_never_a_config_field(saved, tmp_path):
    """The provenance rule: a model folder names what it was trained on; push_to_hub re-saves a loaded model."""
    model, folder = saved
    assert load_pretrained(folder).trained_on is None and "trained_on" not in json.loads((folder / "config.json").read_text())
    model.trained_on = {"train_data": "a" * 64, "val_data": "b" * 64}
    model.save_pretrained(tmp_path / "named")
    loaded = load_pretrained(tmp_path / "named")
    assert loaded.trained_on == model.trained_on and loaded.config == model.config
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again/config.json").read_text())["trained_on"] == model.trained_on
    assert loaded.weights_hash() == model.weights_hash()  # the weights' hash does not depend on it
