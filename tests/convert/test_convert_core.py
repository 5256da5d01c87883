"""fsqtok.convert.core: strict mapping of source tensors, and the atomic, self-describing model folder."""

from pathlib import Path

import pytest
import torch

import fsqtok
from fsqtok.convert import Converted, load_strict, resolve_source, sha256_file, write_converted
from fsqtok.hub import CheckpointError
from fsqtok.tokenizers import ImageConfig, ImageTokenizer


def _model() -> ImageTokenizer:
    return ImageTokenizer(ImageConfig(base_channels=4, channel_mult=(1, 2), mid_attention=False))


def _source(model: ImageTokenizer) -> dict[str, torch.Tensor]:
    """The model's tensors under 'src.'-prefixed names, each shifted so that it differs from the model's."""
    return {f"src.{k}": v.clone() + 1 for k, v in model.state_dict().items()}


def _rename(name: str) -> str:
    return name.removeprefix("src.")


def test_every_source_tensor_lands_in_place_and_skipped_ones_are_listed():
    model, other = _model(), _model()
    source = {**_source(other), "disc.weight": torch.zeros(3), "loss.w": torch.zeros(1)}
    skipped = load_strict(model, source, _rename, "ckpt", skip={r"disc\..*": "discriminator", r"loss\..*": "loss"})
    assert skipped == {"disc.weight": "discriminator", "loss.w": "loss"}
    for k, v in model.state_dict().items():
        assert torch.equal(v, source[f"src.{k}"]), k


def test_an_extra_source_tensor_is_named():
    model = _model()
    source = {**_source(model), "src.extra.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"^ckpt: does not fit ImageTokenizer \(source tensors with no place "
                                              r"in the model: src\.extra\.weight\)$"):
        load_strict(model, source, _rename, "ckpt")


def test_a_missing_source_tensor_is_named_and_nothing_is_loaded():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    source = _source(model)
    del source["src.decoder.conv_out.weight"]
    with pytest.raises(CheckpointError, match=r"model tensors with no source: decoder\.conv_out\.weight\)$"):
        load_strict(model, source, _rename, "ckpt")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_shape_mismatch_and_double_use_are_named():
    model = _model()
    source = _source(model)
    source["src.decoder.conv_out.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"shape mismatch: src\.decoder\.conv_out\.bias \(7,\) -> "):
        load_strict(model, source, _rename, "ckpt")
    source = {**_source(model), "dup.decoder.conv_out.bias": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"used twice: src\.decoder\.conv_out\.bias and dup\.decoder"):
        load_strict(model, source, lambda n: n.split(".", 1)[1], "ckpt")


def _converted(tmp_path: Path) -> Converted:
    src = tmp_path / "src.bin"
    src.write_bytes(b"released weights")
    return Converted(model=_model(), source="org/released", license_name="Some Licence",
                     license_text="https://example.org/licence", source_files={"src.bin": sha256_file(src)},
                     skipped={"disc.weight": "discriminator (training only)"})


def test_written_folder_loads_and_its_card_names_source_licence_hash_and_skipped(tmp_path):
    converted = _converted(tmp_path)
    out = write_converted(converted, tmp_path / "deep" / "out")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = fsqtok.load_pretrained(out)
    assert loaded.weights_hash() == converted.model.weights_hash()
    card = (out / "README.md").read_text()
    assert "license: other\nlicense_name: some-licence\n" in card
    for text in ("org/released", "Some Licence", "https://example.org/licence", converted.source_files["src.bin"],
                 "`disc.weight`: discriminator (training only)"):
        assert text in card
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]  # no temporary folder left


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    converted = _converted(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(converted.model), "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        write_converted(converted, tmp_path / "new" / "parents" / "out")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(OSError, match="disk full"):
        write_converted(converted, tmp_path / "kept" / "out")
    assert list((tmp_path / "kept").iterdir()) == []


def test_an_existing_non_empty_output_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"-o .*out: already exists; remove it or choose another folder$"):
        write_converted(_converted(tmp_path), out)
    assert (out / "mine.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    write_converted(_converted(tmp_path), tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "config.json").is_file()


def test_sha256_file_and_local_sources(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert resolve_source(str(f)) == f and resolve_source(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such file or folder"):
        resolve_source(str(tmp_path / "nowhere"))
