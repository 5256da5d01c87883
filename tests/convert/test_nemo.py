"""fsqtok.convert.nemo against NeMo's own outputs (fixtures made by tests/fixtures/nemo/make_fixtures.py)."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import fsqtok
from fsqtok.cli import main
from fsqtok.convert.nemo import convert_nemo
from fsqtok.hub import CheckpointError
from fsqtok.quantizers import FSQ
from fsqtok.tokenizers import NemoAudioTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nemo"
SRC = Path(fsqtok.__file__).resolve().parents[1]
NAMES = ["lfsc_small", "codec_8x8555_small"]


@pytest.fixture(scope="module")
def converted():
    return {name: convert_nemo(FIXTURES / f"{name}.nemo") for name in NAMES}


def _io(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / f"{name}_io.safetensors"))


@pytest.mark.parametrize("name", NAMES)
def test_tokens_equal_the_reference_and_decode_matches(converted, name):
    model, ref = converted[name].model, _io(name)
    tokens = model.encode(ref["audio"])
    assert tokens.dtype == torch.int64 and tokens.shape == ref["tokens"].shape
    assert torch.equal(tokens, ref["tokens"])  # 100% equal
    decoded = model.decode(ref["tokens"])
    span = float(ref["decoded"].max() - ref["decoded"].min())
    assert decoded.shape == ref["decoded"].shape
    assert (decoded - ref["decoded"]).abs().max() <= 1e-3 * span
    cropped = model.decode(tokens, input_shape=ref["audio"].shape)
    assert cropped.shape == ref["audio"].shape


@pytest.mark.parametrize("name, differ", [("lfsc_small", 6), ("codec_8x8555_small", 4)])
def test_the_default_fsq_formula_changes_a_few_tokens(converted, name, differ):
    """fsqtok's default bound ((1 + eps), atanh) against NeMo's printed one ((1 - eps), tan): on these
    fixtures both bounds stay >= 2.8e-4 from every rounding boundary, so the count is exact."""
    model, ref = converted[name].model, _io(name)
    printed = model.quantizer.fsq
    try:
        model.quantizer.fsq = FSQ(model.config.levels, variant="fsqtok")
        n = int((model.encode(ref["audio"]) != ref["tokens"]).sum())
    finally:
        model.quantizer.fsq = printed
    assert n == differ, f"{n} of {ref['tokens'].numel()} tokens differ"


def test_skipped_tensors_are_the_discriminator_losses_and_fsq_constants(converted):
    conv = converted["lfsc_small"]
    with tarfile.open(FIXTURES / "lfsc_small.nemo") as tar:
        state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()), weights_only=True)
    disc = {k for k in state if k.startswith("discriminator.")}
    assert disc and disc <= set(conv.skipped)
    assert all(conv.skipped[k] == "discriminator (training only)" for k in disc)
    assert {k.split(".")[0] for k in conv.skipped} == {"discriminator", "mel_loss_fn", "stft_loss_fn", "vector_quantizer"}
    assert not any(k.startswith(("audio_encoder.", "audio_decoder.")) for k in conv.skipped)
    assert conv.source_files.keys() == {"lfsc_small.nemo"}
    assert conv.license_name == "NVIDIA Open Model License"


def _retar(tmp_path: Path, edit_state=None, edit_config=None, extra_member: tuple[str, bytes] | None = None) -> Path:
    """A copy of the lfsc fixture with its state dict and/or config edited."""
    with tarfile.open(FIXTURES / "lfsc_small.nemo") as tar:
        state = torch.load(io.BytesIO(tar.extractfile("./model_weights.ckpt").read()), weights_only=True)
        config = yaml.safe_load(tar.extractfile("./model_config.yaml").read())
    if edit_state:
        edit_state(state)
    if edit_config:
        edit_config(config)
    buf = io.BytesIO()
    torch.save(state, buf)
    members = {"model_weights.ckpt": buf.getvalue(), "model_config.yaml": yaml.safe_dump(config).encode()}
    out = tmp_path / "edited.nemo"
    with tarfile.open(out, "w") as tar:
        for name, data in [*members.items(), *([extra_member] if extra_member else [])]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("audio_decoder.post_conv.conv.bias"),
     "model tensors with no source: decoder.out_conv.bias"),
    (lambda s: s.__setitem__("audio_encoder.extra.weight", torch.zeros(2)),
     "source tensors with no place in the model: audio_encoder.extra.weight"),
    (lambda s: s.pop("audio_encoder.pre_conv.conv.parametrizations.weight.original1"),
     "weight-norm tensor audio_encoder.pre_conv.conv.parametrizations.weight.original0 has no "
     "audio_encoder.pre_conv.conv.parametrizations.weight.original1"),
    (lambda s: s.__setitem__("vector_quantizer.fsqs.3.num_levels", torch.tensor([[[8], [5], [5], [5]]])),
     "vector_quantizer.fsqs.3.num_levels is [8, 5, 5, 5], the config gives [8, 7, 6, 6]"),
])
def test_a_tampered_state_dict_is_refused_naming_the_tensor(tmp_path, edit, message):
    with pytest.raises(CheckpointError, match="edited.nemo:model_weights.ckpt: ") as e:
        convert_nemo(_retar(tmp_path, edit_state=edit))
    assert message in str(e.value)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["audio_encoder"].__setitem__("_target_", "nemo.collections.tts.modules.audio_codec_modules."
                                              "MultiBandMelEncoder"),
     "audio_encoder is nemo.collections.tts.modules.audio_codec_modules.MultiBandMelEncoder; fsqtok converts "
     "HiFiGANEncoder only"),
    (lambda c: c["audio_decoder"].__setitem__("new_option", 1), "audio_decoder has setting(s) fsqtok does not port: new_option"),
    (lambda c: c["audio_decoder"].__setitem__("base_channels", 32), "shape mismatch: audio_decoder."),
    (lambda c: c.__setitem__("samples_per_frame", 512), "samples_per_frame 512 is not the product of the encoder's rates"),
])
def test_a_config_that_does_not_fit_is_refused_in_one_line(tmp_path, edit, message):
    with pytest.raises(CheckpointError, match="edited.nemo:model_") as e:
        convert_nemo(_retar(tmp_path, edit_config=edit))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_tar_members_outside_the_top_are_never_read_or_written(tmp_path):
    """Only top-level members are read, copied under fixed names; a '../' member is ignored, never extracted."""
    path = _retar(tmp_path, extra_member=("../escaped.txt", b"x"))
    assert type(convert_nemo(path).model) is NemoAudioTokenizer
    assert not (tmp_path.parent / "escaped.txt").exists()
    bad = tmp_path / "nested.nemo"
    with tarfile.open(bad, "w") as tar:
        tar.add(FIXTURES / "lfsc_small.nemo", arcname="sub/model_weights.ckpt")
    with pytest.raises(CheckpointError, match="nested.nemo: no model_config.yaml or model_weights.ckpt at the top"):
        convert_nemo(bad)


def test_a_folder_must_hold_exactly_one_nemo_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected one .nemo file in the folder, found 0"):
        convert_nemo(tmp_path)
    (tmp_path / "a.nemo").write_bytes(b"")
    (tmp_path / "b.nemo").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"found 2 \(a.nemo, b.nemo\); pass the file itself"):
        convert_nemo(tmp_path)
    with pytest.raises(CheckpointError, match="a.nemo: not a .nemo file"):
        convert_nemo(tmp_path / "a.nemo")


def test_cli_writes_a_loadable_folder_from_a_local_file(tmp_path, capsys):
    out = tmp_path / "lfsc"
    assert main(["convert", "nemo", str(FIXTURES / "lfsc_small.nemo"), "-o", str(out)]) == 0, capsys.readouterr().err
    tok = fsqtok.load_tokenizer(out)
    assert type(tok) is NemoAudioTokenizer
    ref = _io("lfsc_small")
    assert torch.equal(tok.encode(ref["audio"]), ref["tokens"])
    card = (out / "README.md").read_text()
    assert "lfsc_small.nemo" in card and "NVIDIA Open Model License" in card
    assert "A port of an NVIDIA NeMo FSQ audio codec (HiFi-GAN encoder and decoder, 8 x FSQ [8, 7, 6, 6])" in card
    assert "`discriminator." in card and json.loads((out / "config.json").read_text())["fsq_variant"] == "printed"


def test_cli_converts_a_repo_id_from_an_offline_hub_cache(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--nvidia-test--tiny-codec"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "tiny-codec.nemo").write_bytes((FIXTURES / "lfsc_small.nemo").read_bytes())
    (snapshot / "README.md").write_text("# a codec\n")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    script = ("import sys; from fsqtok.cli import main; "
              f"sys.exit(main(['convert', 'nemo', 'nvidia-test/tiny-codec', '-o', {str(out)!r}]))")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert type(fsqtok.load_tokenizer(out)) is NemoAudioTokenizer
    assert "from `nvidia-test/tiny-codec`" in (out / "README.md").read_text()


def test_fsqtok_tokenize_runs_on_a_converted_codec(tmp_path, capsys):
    """Audio files -> token shards with the converted LFSC fixture: the shards hold `encode`'s (groups, frames)."""
    from fsqtok.datasets.samples import sample_audio
    from fsqtok.media import write_audio
    from fsqtok.shards import ShardDataset
    from fsqtok.shards.cli import main as tokenize

    assert main(["convert", "nemo", str(FIXTURES / "lfsc_small.nemo"), "-o", str(tmp_path / "tok")]) == 0
    tok = fsqtok.load_tokenizer(tmp_path / "tok")
    wav = sample_audio(3, 0.5, 22050, seed=5)
    (tmp_path / "a").mkdir()
    for i in range(3):
        write_audio(tmp_path / "a" / f"{i}.wav", wav[i], 22050)
    code = tokenize(["-t", str(tmp_path / "tok"), "--data", str(tmp_path / "a"), "-o", str(tmp_path / "out"),
                     "--shard-size", "2", "--batch-size", "2", "--num-workers", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    ds = ShardDataset(tmp_path / "out")
    torch.set_flush_denormal(True)  # as the pipeline does on CPU
    try:
        expected = tok.encode(wav)
    finally:
        torch.set_flush_denormal(False)
    assert expected.shape == (3, 8, 11)
    assert torch.equal(torch.stack([ds[i]["tokens"] for i in range(3)]), expected)
