"""fsqtok convert cosmos: the ports reproduce the reference's fixtures exactly, from every source kind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cosmos_fixtures import FIXTURES, NAMES, copy_fixture, io, kwargs, save_jit, write_jit
from safetensors.torch import load_file, save_file

import fsqtok
from fsqtok.cli import main
from fsqtok.convert import sha256_file
from fsqtok.convert.cosmos import TorchScriptRefused, convert_cosmos, read_tensors
from fsqtok.hub import CheckpointError, ConfigError
from fsqtok.tokenizers import CosmosImageTokenizer, CosmosVideoTokenizer, load_tokenizer

SRC = Path(fsqtok.__file__).resolve().parents[1]


def _check_against_reference(model, name: str) -> None:
    """Indices 100% equal to the reference's; decode within 1e-3 of the output range."""
    data = io(name)
    indices = model.encode(data["input"])
    assert indices.dtype == torch.int64 and indices.shape == data["indices"].shape
    assert torch.equal(indices, data["indices"]), f"{(indices != data['indices']).sum()} indices differ"
    decoded = model.decode(data["indices"])
    span = float(data["decoded"].max() - data["decoded"].min())
    assert float((decoded - data["decoded"]).abs().max()) <= 1e-3 * span


@pytest.mark.parametrize("name", NAMES)
def test_port_matches_the_reference_fixture(name, tmp_path):
    converted = convert_cosmos(copy_fixture(name, tmp_path / name), config=kwargs(name))
    model = converted.model
    assert isinstance(model, CosmosVideoTokenizer if name.startswith("video") else CosmosImageTokenizer)
    assert converted.skipped == {}  # a reference state_dict() holds no derived buffers
    _check_against_reference(model, name)
    with torch.no_grad():  # the margin the fixture was chosen for is far above the port's float error
        z = model.encoder(io(name)["input"])
        bound = model.quantizer.bound(z.movedim(1, -1))
    assert float((bound - io(name)["pre_rounding"]).abs().max()) < 1e-4


def test_video_port_is_causal():
    """Latent frames 0..2 (input frames 0..8 at tau=4) do not change when frames 9.. change."""
    model = convert_cosmos(FIXTURES / "video_haar1_attn" / "model.safetensors", config=kwargs("video_haar1_attn")).model
    x = io("video_haar1_attn")["input"]
    y = x.clone()
    y[:, :, 9:] = torch.flip(y[:, :, 9:], dims=[-1]) * 0.5
    with torch.no_grad():
        a, b = model.encoder(x), model.encoder(y)
    assert torch.equal(a[:, :, :3], b[:, :, :3])
    assert not torch.equal(a[:, :, 3:], b[:, :, 3:])
    assert torch.equal(model.encode(x)[:, :3], model.encode(y)[:, :3])


@pytest.mark.parametrize("name, folder", [("image_haar1_attn", "Cosmos-0.1-Tokenizer-DI8x8"),
                                          ("video_haar1_attn", "Cosmos-0.1-Tokenizer-DV4x8x8")])
def test_torchscript_needs_the_flag_and_then_converts_without_kwargs(name, folder, tmp_path, capsys):
    """The released layout (encoder.jit + decoder.jit): architecture from shapes, buffers and the variant name."""
    src = write_jit(name, tmp_path / folder)
    out = tmp_path / "out"
    assert main(["convert", "cosmos", str(src), "-o", str(out)]) == 1
    assert capsys.readouterr().err == (f"error: {src / 'encoder.jit'}: TorchScript is compiled code and is read "
                                       "only with --allow-torchscript (pass it for files you trust)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]  # nothing written, not even an empty folder
    assert main(["convert", "cosmos", str(src), "--allow-torchscript", "-o", str(out)]) == 0, capsys.readouterr().err
    model = load_tokenizer(out)
    _check_against_reference(model, name)
    card = (out / "README.md").read_text()
    for file in ("encoder.jit", "decoder.jit"):
        assert f"| `{file}` | `{sha256_file(src / file)}` |" in card
    assert "NVIDIA Open Model License" in card and str(src) in card
    assert "`quantizer.implicit_codebook`" not in card  # only buffers the files hold are listed
    with pytest.raises(TorchScriptRefused):
        convert_cosmos(src)


def test_derived_buffers_are_checked_and_listed(tmp_path):
    """A buffer the architecture fixes (here the FSQ place values) is checked, then listed as skipped."""
    src = write_jit("image_haar2", tmp_path / "DI16x16")
    encoder = read_tensors(src / "encoder.jit")
    good = torch.tensor([1, 8, 64, 512, 2560, 12800], dtype=torch.int32)
    save_jit({**encoder, "quantizer._basis": good}, src / "encoder.jit")
    assert convert_cosmos(src, allow_torchscript=True).skipped == {
        "quantizer._basis": "FSQ place values, fixed by levels (checked)"}
    save_jit({**encoder, "quantizer._basis": good.flip(0)}, src / "encoder.jit")
    with pytest.raises(CheckpointError, match=r"quantizer\._basis does not fit the architecture read from the checkpoint$"):
        convert_cosmos(src, allow_torchscript=True)


def test_cli_converts_a_local_folder_with_kwargs(tmp_path, capsys):
    src = copy_fixture("video_haar2", tmp_path / "src")
    (tmp_path / "kwargs.json").write_text(json.dumps(kwargs("video_haar2")))
    out = tmp_path / "out"
    assert main(["convert", "cosmos", str(src), "--config", str(tmp_path / "kwargs.json"), "-o", str(out)]) == 0
    assert "CosmosVideoTokenizer" in capsys.readouterr().out
    model = fsqtok.load_pretrained(out)
    assert type(model) is CosmosVideoTokenizer and json.loads((out / "config.json").read_text())["model_type"] == \
        "cosmos_video_tokenizer"
    _check_against_reference(model, "video_haar2")


def test_convert_from_an_offline_hub_cache(tmp_path):
    """A repo id resolves from a pre-filled cache with HF_HUB_OFFLINE=1 set before huggingface_hub is imported."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--nvidia--Cosmos-0.1-Tokenizer-DI8x8"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    write_jit("image_haar1_attn", repo / "snapshots" / commit)
    script = ("import sys; from fsqtok.cli import main; "
              "sys.exit(main(['convert', 'cosmos', sys.argv[1], '--allow-torchscript', '-o', sys.argv[2]]))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "home"), "PYTHONPATH": str(SRC)}
    run = lambda repo_id, out: subprocess.run([sys.executable, "-c", script, repo_id, str(out)], env=env,  # noqa: E731
                                              capture_output=True, text=True, timeout=300)
    result = run("nvidia/Cosmos-0.1-Tokenizer-DI8x8", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    _check_against_reference(load_tokenizer(tmp_path / "out"), "image_haar1_attn")
    assert "Converted with `fsqtok convert` from `nvidia/Cosmos-0.1-Tokenizer-DI8x8`" in \
        (tmp_path / "out" / "README.md").read_text()
    result = run("nvidia/Cosmos-0.1-Tokenizer-DV4x8x8", tmp_path / "out2")
    assert result.returncode == 1 and not (tmp_path / "out2").exists()
    assert result.stderr == ("error: nvidia/Cosmos-0.1-Tokenizer-DV4x8x8: no such local folder, and Hub repo "
                             "nvidia/Cosmos-0.1-Tokenizer-DV4x8x8 has no snapshot in the Hub cache (HF_HUB_OFFLINE "
                             "is set); pass a local folder, or download the repo once online\n")


def _edited(tmp_path: Path, edit) -> Path:
    src = copy_fixture("image_haar2", tmp_path / "src")
    state = load_file(str(src / "model.safetensors"))
    edit(state)
    save_file(state, str(src / "model.safetensors"))
    return src


def test_a_missing_tensor_is_an_error_naming_it(tmp_path, capsys):
    src = _edited(tmp_path, lambda s: s.pop("decoder.up.0.block.1.conv2.bias"))
    (tmp_path / "k.json").write_text(json.dumps(kwargs("image_haar2")))
    assert main(["convert", "cosmos", str(src), "--config", str(tmp_path / "k.json"), "-o", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == (f"error: {src}: does not fit CosmosImageTokenizer (model tensors with no "
                                       "source: decoder.up.0.block.1.conv2.bias)\n")
    assert not (tmp_path / "o").exists()


def test_an_extra_tensor_is_an_error_naming_it(tmp_path):
    src = _edited(tmp_path, lambda s: s.update({"encoder.down.0.extra.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"source tensors with no place in the model: encoder\.down\.0\.extra\.weight\)$"):
        convert_cosmos(src, config=kwargs("image_haar2"))
    src = _edited(tmp_path / "b", lambda s: s.pop("encoder.mid.attn_1.k.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensor encoder\.mid\.attn_1\.k\.weight \(attention needs q, k and v\)$"):
        convert_cosmos(src, config=kwargs("image_haar2"))


def test_kwargs_that_contradict_or_do_not_exist_are_errors(tmp_path):
    src = copy_fixture("video_haar2", tmp_path / "src")
    given = kwargs("video_haar2")
    with pytest.raises(ConfigError, match=r"^--config: channels=64, but .* has channels=16$"):
        convert_cosmos(src, config={**given, "channels": 64})
    with pytest.raises(ConfigError, match=r"^--config: unknown kwarg\(s\) colour for a Cosmos discrete video tokenizer$"):
        convert_cosmos(src, config={**given, "colour": 1})
    with pytest.raises(ConfigError, match=r"--config: quantizer 'LFQ': only FSQ"):
        convert_cosmos(src, config={**given, "quantizer": "LFQ"})
    with pytest.raises(ConfigError, match=r"temporal and spatial compression leave no trace in its weights"):
        convert_cosmos(src, config={"levels": given["levels"]})
