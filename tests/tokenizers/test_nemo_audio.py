"""NemoAudioTokenizer: released configurations, token layout, Hub round trip, config checks."""

import json
import math
from pathlib import Path

import pytest
import torch

import fsqtok
from fsqtok.hub import ConfigError
from fsqtok.tokenizers import NemoAudioConfig, NemoAudioTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nemo"
TINY = dict(encoder_channels=2, decoder_channels=64, encoder_kernels=(3,), decoder_kernels=(3,), decoder_dilations=(1,))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return NemoAudioTokenizer(NemoAudioConfig(**TINY)).eval()


def test_the_default_is_the_low_frame_rate_speech_codec():
    """Rates of NVIDIA's LFSC; parameter counts equal those NeMo 3.0.0 gives for its released config."""
    counts = json.loads((FIXTURES / "fixtures.json").read_text())["released"]["low_frame_rate_speech_codec_22khz"]
    tok = NemoAudioTokenizer()
    for ours, theirs in ((tok.encoder, "audio_encoder"), (tok.decoder, "audio_decoder")):
        # NeMo also counts weight norm's gains g (one per output channel; input channel of a transposed
        # conv), which the port folds into the weights
        gains = sum(m.in_channels if isinstance(m, torch.nn.ConvTranspose1d) else m.out_channels
                    for m in ours.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)))
        assert sum(p.numel() for p in ours.parameters()) + gains == counts[theirs]
    assert sum(p.numel() for p in tok.quantizer.parameters()) == counts["vector_quantizer"] == 0
    assert tok.hop_length == 1024 and tok.tokens_per_second == pytest.approx(21.533, abs=1e-3)
    assert tok.codebook_size == 2016 and tok.config.num_groups == 8
    assert tok.bitrate == pytest.approx(22050 / 1024 * 8 * math.log2(2016))  # 1.89 kbit/s
    assert tok.summary()["groups"] == 8 and tok.quantizer.fsq.variant == "printed"


def test_tokens_are_batch_groups_frames(tiny):
    x = torch.randn(2, 3, 3500) * 0.1  # stereo mixed down; 3500 samples pad to 4 frames
    tokens = tiny.encode(x)
    assert tokens.shape == tiny.tokens_shape(x.shape) == (2, 8, 4) and tokens.dtype == torch.int64
    assert tiny.decode(tokens).shape == (2, 1, 4 * 1024)
    assert tiny.decode(tokens, input_shape=x.shape).shape == (2, 1, 3500)
    with pytest.raises(ValueError, match=r"expected non-empty indices with 3 dims \(B, G, N\), got shape \(2, 4\)"):
        tiny.decode(tokens[:, 0])
    # reflect padding needs more input than padding (the kernel-7 convs at the frame rate: 4 frames)
    assert tiny.encoder.min_frames == tiny.decoder.min_frames == 4
    with pytest.raises(ValueError, match=r"input of 3072 samples \(3 frames\) is too short: with reflect padding "
                                         r"this codec needs at least 4 frames \(3073 samples at 22050 Hz\)"):
        tiny.encode(x[..., :3072])
    with pytest.raises(ValueError, match="indices of 3 frames is too short"):
        tiny.decode(tokens[..., :3])
    assert NemoAudioTokenizer().decoder.min_frames == 4  # LFSC: kernel 11, dilation 5 after 8x upsampling
    with pytest.raises(ValueError, match="encode_chunked needs a causal model; NeMo codecs are not causal"):
        tiny.encode_chunked(x)


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "nemo_audio_tokenizer" and raw["fsq_variant"] == "printed"
    loaded = fsqtok.load_tokenizer(tmp_path)
    assert type(loaded) is NemoAudioTokenizer and loaded.config == tiny.config
    x = torch.randn(1, 1, 5000) * 0.1
    assert torch.equal(loaded.encode(x), tiny.encode(x))


@pytest.mark.parametrize("kwargs, message", [
    (dict(quantizer="rfsq"), "NemoAudioConfig.quantizer: NeMo codecs use grouped FSQ: must be 'fsq', got 'rfsq'"),
    (dict(latent_channels=16), "NemoAudioConfig.latent_channels: must be num_groups * len(levels) = 32"),
    (dict(fsq_variant="nemo"), "NemoAudioConfig.fsq_variant: must be one of 'fsqtok', 'printed'; got 'nemo'"),
    (dict(decoder_rates=(8, 8, 4, 2)), "NemoAudioConfig.decoder_rates: product 512 must equal"),
    (dict(decoder_activation="relu"), "NemoAudioConfig.decoder_activation: must be one of"),
])
def test_bad_config_is_one_line(kwargs, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        NemoAudioConfig(**kwargs)


def test_the_port_is_not_causal_so_it_neither_streams_nor_runs_blocks(tiny):
    """NeMo's centred convolutions see the future: ``encode`` is one whole pass, and streams are refused."""
    tok = tiny
    x = torch.randn(1, 1, 40 * tok.hop_length)
    assert torch.equal(tok.encode(x), tok.quantizer(tok.encoder(x)).indices)  # the plain one-call pass
    for make in (tok.stream_encoder, tok.stream_decoder):
        with pytest.raises(ValueError, match="NemoAudioTokenizer: .*needs a causal model"):
            make()
