"""export_onnx: the folder it writes, its dynamic axes, its rounding, and what it refuses."""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch

from fsqtok.export import ExportError, OnnxTokenizer, check_output_dir, export_onnx
from fsqtok.export.exporter import export_copy
from fsqtok.tokenizers import AudioConfig, AudioTokenizer, ImageConfig, ImageTokenizer
from onnx_checks import CASES, media

from fsqtok.export.agreement import agreement

NAMES = list(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_every_input_and_output_axis_but_channels_and_stages_is_dynamic(exported, name):
    tok, _, out, _ = exported(name)
    meta = json.loads((out / "fsqtok_onnx.json").read_text())
    for graph in ("encoder", "decoder"):
        model = onnx.load(str(out / meta[graph]["file"]), load_external_data=False)
        pairs = ((model.graph.input[0], meta[graph]["input"]), (model.graph.output[0], meta[graph]["output"]))
        for value, entry in pairs:
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            assert dims == entry["shape"]
            fixed = [d for d in dims if isinstance(d, int)]
            assert len(fixed) <= 1 + (tok.config.quantizer == "rfsq")  # channels, stages
            assert dims[0] == "batch"


@pytest.mark.parametrize("name", NAMES)
def test_the_json_states_what_the_graphs_need(exported, name):
    tok, _, out, source = exported(name)
    meta = json.loads((out / "fsqtok_onnx.json").read_text())
    assert meta["format"] == "fsqtok-onnx" and meta["modality"] == tok.modality and meta["opset"] == 18
    assert meta["weights_sha256"] == source.weights_hash() and meta["source"] == f"test:{name}"
    assert meta["levels"] == list(tok.config.levels) and meta["codebook_size"] == tok.codebook_size
    assert meta["num_stages"] == tok.num_stages and meta["source_num_stages"] == source.num_stages
    assert meta["check"]["index_agreement"] == 1.0 and meta["check"]["decode_max_abs_error"] < 1e-3
    assert meta.get("sample_rate") == (16000 if tok.modality == "audio" else None)
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "fsqtok_onnx.json"]


def test_exported_stages_are_the_first_stages_of_the_source(exported):
    tok, onnx_tok, _, source = exported("audio_independent")
    x = media("audio_independent")[0]
    assert torch.equal(onnx_tok.encode(x), source.encode(x)[:, :, :2])
    assert torch.equal(tok.encode(x), source.encode(x)[:, :, :2])


def _with_rounding(path, op: str, target):
    model = onnx.load(str(path))
    rounds = [node for node in model.graph.node if node.op_type == "Round"]
    for node in rounds:
        node.op_type = op
    onnx.save(model, str(target))
    return len(rounds)


@pytest.mark.parametrize("name", ["image", "audio"])
def test_the_graph_rounds_as_pytorch_and_another_rounding_is_caught(exported, name, tmp_path):
    tok, onnx_tok, out, _ = exported(name)
    ops = {node.op_type for node in onnx.load(str(out / "encoder.onnx")).graph.node}
    assert "Round" in ops and not ops & {"Floor", "Ceil"}  # ONNX Round is half to even, as torch.round
    assert _with_rounding(out / "encoder.onnx", "Floor", tmp_path / "floor.onnx") == tok.num_stages
    session = ort.InferenceSession(str(tmp_path / "floor.onnx"), providers=["CPUExecutionProvider"])
    x = media(name)[0]
    floored = torch.from_numpy(session.run(None, {"media": x.numpy()})[0])
    fraction, unexplained = agreement(tok, x, floored)
    assert unexplained > 0 and fraction < 0.9  # the check the equality tests use sees it


def test_output_folder_rules(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="foreign: is not empty and holds no fsqtok_onnx.json"):
        check_output_dir(tmp_path / "foreign")
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="is a file"):
        check_output_dir(tmp_path / "file")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "fsqtok_onnx.json").write_text("{}")
    assert check_output_dir(tmp_path / "earlier") == tmp_path / "earlier"  # an earlier export is replaced
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"


def test_refusals_come_before_any_work(tmp_path):
    vq = ImageTokenizer(ImageConfig(quantizer="vq", base_channels=8, channel_mult=(1, 2)))
    with pytest.raises(ExportError, match="not the VQ baseline"):
        export_onnx(vq, tmp_path / "vq")
    audio = AudioTokenizer(AudioConfig(base_channels=4, strides=(2, 4), dilations=(1,)))
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ExportError, match=r"num_stages must be an int in \[1, 4\]"):
            export_onnx(audio, tmp_path / "audio", num_stages=bad)
    with pytest.raises(TypeError, match="expected an fsqtok tokenizer"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "linear")
    from fsqtok.tokenizers.nemo_audio import NemoAudioConfig, NemoAudioTokenizer

    nemo = NemoAudioTokenizer(NemoAudioConfig(encoder_channels=4, decoder_channels=32))
    with pytest.raises(ExportError, match="NemoAudioTokenizer: .* its GroupedFSQ bottleneck is not exported yet"):
        export_onnx(nemo, tmp_path / "nemo")
    assert not any(tmp_path.iterdir())


def test_a_tampered_graph_is_refused(exported, tmp_path):
    _, _, out, _ = exported("image")
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    OnnxTokenizer(copy)
    model = onnx.load(str(copy / "decoder.onnx"))
    model.doc_string = "edited"
    onnx.save(model, str(copy / "decoder.onnx"))
    with pytest.raises(ValueError, match="decoder.onnx: missing or not the graph fsqtok_onnx.json describes"):
        OnnxTokenizer(copy)
    with pytest.raises(FileNotFoundError, match="no fsqtok_onnx.json; not an fsqtok ONNX export"):
        OnnxTokenizer(tmp_path)


def test_export_copy_is_float32_eval_and_keeps_the_weights():
    tok = ImageTokenizer(ImageConfig(base_channels=8, channel_mult=(1, 2))).train()
    copy = export_copy(tok, 1)
    assert not copy.training and copy.weights_hash() == tok.weights_hash()
