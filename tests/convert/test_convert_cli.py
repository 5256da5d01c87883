"""`fsqtok convert`: dispatch to a family's converter, one-line errors, and nothing written on failure."""

import json

import pytest

from fsqtok.cli import main
from fsqtok.cli_support import UsageError
from fsqtok.convert import Converted, cli
from fsqtok.tokenizers import ImageConfig, ImageTokenizer


@pytest.fixture
def fake_converter(monkeypatch):
    """Replace the family's converter by one that records its call (or raises ``fail``)."""
    calls = []

    def install(fail: Exception | None = None):
        def convert(path, **kwargs):
            calls.append((path, kwargs))
            if fail is not None:
                raise fail
            model = ImageTokenizer(ImageConfig(base_channels=4, channel_mult=(1, 2), mid_attention=False))
            return Converted(model, str(path), "L", "text", {"f": "0" * 64}, {})

        monkeypatch.setattr(cli, "_converter", lambda family: convert)
        return calls

    return install


def test_cosmos_passes_kwargs_and_flag_and_records_the_given_source(tmp_path, fake_converter, capsys):
    calls = fake_converter()
    (tmp_path / "kwargs.json").write_text(json.dumps({"z_channels": 16}))
    out = tmp_path / "out"
    code = main(["convert", "cosmos", str(tmp_path), "--config", str(tmp_path / "kwargs.json"),
                 "--allow-torchscript", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert calls == [(tmp_path, {"config": {"z_channels": 16}, "allow_torchscript": True})]
    assert f"Converted with `fsqtok convert` from `{tmp_path}`" in (out / "README.md").read_text()


def test_a_failing_converter_is_one_line_and_writes_nothing(tmp_path, fake_converter, capsys):
    fake_converter(ValueError("ckpt: bad tensor"))
    assert main(["convert", "nemo", str(tmp_path), "-o", str(tmp_path / "a" / "out")]) == 1
    assert capsys.readouterr().err == "error: ckpt: bad tensor\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--config", "missing.json"], "--config missing.json: no such file"),
])
def test_bad_config_argument_is_a_usage_error(tmp_path, fake_converter, capsys, args, message):
    fake_converter()
    assert main(["convert", "cosmos", str(tmp_path), "-o", str(tmp_path / "out"), *args]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_config_must_be_a_json_object(tmp_path):
    (tmp_path / "k.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match=r"k\.json: must hold a JSON object of keyword arguments$"):
        cli.read_kwargs(str(tmp_path / "k.json"))
    (tmp_path / "k.json").write_text("{")
    with pytest.raises(UsageError, match=r"k\.json: not valid JSON"):
        cli.read_kwargs(str(tmp_path / "k.json"))


def test_existing_output_and_missing_source_are_refused(tmp_path, fake_converter, capsys):
    calls = fake_converter()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    assert main(["convert", "cosmos", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err and calls == []
    assert main(["convert", "cosmos", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o2")]) == 1
    assert "nowhere: no such file or folder" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_a_family_without_its_module_is_one_line():
    with pytest.raises(UsageError, match=r"^fsqtok convert nosuch: not available in this version of fsqtok$"):
        cli._converter("nosuch")
