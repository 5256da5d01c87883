"""Streaming audio is bit-exact: any cutting of real speech gives encode's tokens and decode's samples."""

import json

import pytest
import torch

from fsqtok import load_tokenizer
from fsqtok.datasets.samples import sample_audio
from fsqtok.tokenizers import AudioConfig, AudioTokenizer


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convs run fastest on one thread (on a loaded machine, several spin); results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(**kw) -> AudioTokenizer:
    torch.manual_seed(0)
    return AudioTokenizer(AudioConfig(**kw)).eval()


@pytest.fixture(scope="module")
def tok():
    return make()  # 16 kHz, hop 320, 4 residual stages, blocks of 4 tokens


@pytest.fixture(scope="module")
def speech():
    return sample_audio(2, 1.0, 16000, seed=3)[..., :16000 - 77]  # B = 2, not a multiple of the hop


def cuts(total: int, seed: int, most: int) -> list[int]:
    """Random chunk sizes in [0, most] (zero-size pushes included) that add up to ``total``."""
    g = torch.Generator().manual_seed(seed)
    sizes, done = [], 0
    while done < total:
        sizes.append(min(int(torch.randint(0, most + 1, (1,), generator=g)), total - done))
        done += sizes[-1]
    return sizes


def stream(coder, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    parts = [coder.push(c) for c in x.split(sizes, dim=-1)]
    return torch.cat([*parts, coder.flush()], dim=-1)


def test_one_sample_pushes_give_encode_tokens(tok, speech):
    x = speech[:, :, :2700]  # 8.4 hops: two full blocks and a padded last one
    idx = tok.stream_encoder()
    out = [idx.push(x[..., i : i + 1]) for i in range(x.shape[-1])]
    assert [o.shape[-1] for o in out if o.shape[-1]] == [4, 4]  # a block's tokens come out together
    assert [i for i, o in enumerate(out) if o.shape[-1]] == [1279, 2559]  # on its last sample
    assert torch.equal(torch.cat([*out, idx.flush()], dim=-1), tok.encode(x))


@pytest.mark.parametrize("seed", range(5))
def test_random_cuts_give_encode_tokens(tok, speech, seed):
    assert torch.equal(stream(tok.stream_encoder(), speech, cuts(speech.shape[-1], seed, 2000)), tok.encode(speech))


def test_whole_push_and_hop_padding(tok, speech):
    enc = tok.stream_encoder()
    first = enc.push(speech)
    rest = enc.flush()
    assert first.shape[-1] == 48 and rest.shape[-1] == 2  # 15923 samples: 12 blocks, then 563 samples = 2 tokens
    assert torch.equal(torch.cat([first, rest], dim=-1), tok.encode(speech))
    assert enc.samples_in == speech.shape[-1]


def test_one_token_pushes_and_random_cuts_give_decode_samples(tok, speech):
    idx = tok.encode(speech)
    y = tok.decode(idx)
    assert torch.equal(stream(tok.stream_decoder(), idx, [1] * idx.shape[-1]), y)
    for seed in range(3):
        assert torch.equal(stream(tok.stream_decoder(), idx, cuts(idx.shape[-1], seed, 9)), y)
    assert torch.equal(stream(tok.stream_decoder(), idx, [idx.shape[-1]]), y)


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_every_number_of_stages_decodes_as_decode(tok, speech, stages):
    idx = tok.encode(speech[:, :, :5000])
    want = tok.decode(idx, num_stages=stages)
    assert torch.equal(stream(tok.stream_decoder(num_stages=stages), idx, cuts(idx.shape[-1], stages, 5)), want)
    prefix = idx[:, :stages]  # tokens that carry only `stages` stages, decoded with num_stages=None
    assert torch.equal(stream(tok.stream_decoder(), prefix, cuts(idx.shape[-1], 9, 5)), want)


@pytest.mark.parametrize(
    "kw,channels",
    [
        (dict(quantizer="fsq"), 1),  # plain FSQ: no stage axis
        (dict(channels="independent", block_tokens=3), 2),  # a channel axis in the tokens
        (dict(block_tokens=1), 2),  # stereo mixed down to mono
        (dict(sample_rate=44100, strides=(2, 4, 8, 8), block_tokens=2), 1),  # 44.1 kHz, hop 512
    ],
)
def test_other_configs_stream_bit_exact(kw, channels):
    tok = make(**kw)
    x = sample_audio(2 * channels, 0.25, tok.config.sample_rate, seed=1).reshape(2, channels, -1)
    idx = tok.encode(x)
    assert torch.equal(stream(tok.stream_encoder(), x, cuts(x.shape[-1], 0, 1500)), idx)
    assert torch.equal(stream(tok.stream_decoder(), idx, cuts(idx.shape[-1], 0, 4)), tok.decode(idx))


def test_encode_chunked_is_the_stream(tok, speech):
    assert torch.equal(tok.encode_chunked(speech, chunk_tokens=3), tok.encode(speech))


def test_no_lookahead(tok, speech):
    """What the stated latency rests on: token i needs samples up to (i + 1) * hop only, and the
    samples of token i need tokens up to i only (no output waits for later input)."""
    x = speech[:1, :, :3200]
    later = x.clone()
    later[..., 1600:] = -later[..., 1600:]
    assert torch.equal(tok.encode(later)[..., :5], tok.encode(x)[..., :5])
    assert not torch.equal(tok.encode(later)[..., 5], tok.encode(x)[..., 5])
    idx = tok.encode(x)
    changed = idx.clone()
    changed[..., 5:] = (changed[..., 5:] + 1) % tok.codebook_size
    assert torch.equal(tok.decode(changed)[..., :1600], tok.decode(idx)[..., :1600])


def test_flush_semantics_and_errors(tok, speech):
    enc = tok.stream_encoder()
    assert enc.push(speech[..., :0]).shape == (2, 4, 0)
    assert enc.push(speech[..., :100]).shape == (2, 4, 0)
    assert enc.flush().shape == (2, 4, 1)  # 100 samples: one padded token, nothing lost
    for call in (lambda: enc.push(speech[..., :10]), enc.flush):
        with pytest.raises(ValueError, match=r"after flush\(\); start a new stream") as info:
            call()
        assert "\n" not in str(info.value)
    assert tok.stream_encoder().flush().shape == (0, 4, 0)  # nothing pushed, nothing out
    enc = tok.stream_encoder()
    enc.push(speech)
    with pytest.raises(ValueError, match=r"AudioStreamEncoder: samples of shape \(1, 1\)"):
        enc.push(speech[:1])
    with pytest.raises(ValueError, match="NaN"):
        enc.push(torch.full((2, 1, 5), float("nan")))
    with pytest.raises(ValueError, match=r"expected samples \(B, C, n\) at 16000 Hz"):
        tok.stream_encoder().push(speech[0])
    dec = tok.stream_decoder()
    idx = tok.encode(speech)
    dec.push(idx[..., :3])
    with pytest.raises(ValueError, match=r"tokens of shape \(2, 2\)"):
        dec.push(idx[:, :2, 3:])
    with pytest.raises(ValueError, match="num_stages must be in"):
        tok.stream_decoder(num_stages=5)
    with pytest.raises(ValueError, match=r"causal model \(config.causal=True\)"):
        make(causal=False).stream_encoder()


def test_decoder_flush_returns_the_buffered_tokens(tok, speech):
    idx = tok.encode(speech)[..., :6]
    dec = tok.stream_decoder()
    assert dec.push(idx[..., :0]).shape == (2, 1, 0)
    assert dec.push(idx).shape == (2, 1, 4 * 320)
    assert dec.flush().shape == (2, 1, 2 * 320)


def test_whole_passes_run_in_fixed_blocks(tok, speech):
    """The mechanism behind the bit-exactness: encode and decode call the networks on blocks of one
    shape only, as a stream does (the plain whole pass rounds differently on long inputs): the full
    blocks stacked along the batch axis in one call, then the zero-padded last block."""
    shapes = []
    hooks = [m.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape))) for m in (tok.encoder, tok.decoder)]
    try:
        tok.decode(tok.encode(speech))
    finally:
        for h in hooks:
            h.remove()
    assert shapes == [(12 * 2, 1, 4 * 320), (2, 1, 4 * 320), (12 * 2, 4, 4), (2, 4, 4)]


def test_blocks_compute_the_plain_pass(tok, speech):
    """The blocks change rounding only: the plain one-call networks give the same function."""
    idx = tok.encode(speech)
    x = torch.nn.functional.pad(speech, (0, -speech.shape[-1] % 320))
    plain = tok._quantize(tok.encoder(x))
    assert (plain == idx).float().mean() > 0.995
    with torch.no_grad():
        y = tok.decoder(tok.quantizer.decode_indices(idx))
    torch.testing.assert_close(tok.decode(idx), y, rtol=0, atol=1e-5)


def test_folders_saved_before_blocks_load_unchanged(tok, speech, tmp_path):
    """A config.json without block_tokens (saved before it existed) loads with the default, same weights."""
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config.pop("block_tokens") == 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_tokenizer(tmp_path)
    assert loaded.config == tok.config and loaded.weights_hash() == tok.weights_hash()
    assert torch.equal(stream(loaded.stream_encoder(), speech, cuts(speech.shape[-1], 4, 3000)), tok.encode(speech))


def test_blocks_stack_only_where_the_kernels_ignore_the_batch_size(speech):
    """Off the CPU float32 kernels (here float64: PyTorch's own choice) a whole pass runs one block per call,
    as a stream does, and stays bit-exact with it."""
    tok64, x = make().double(), speech.double()
    shapes = []
    hook = tok64.encoder.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        idx = tok64.encode(x)
    finally:
        hook.remove()
    assert shapes == [(2, 1, 4 * 320)] * 13
    assert torch.equal(stream(tok64.stream_encoder(), x, cuts(x.shape[-1], 5, 3000)), idx)
    y = tok64.decode(idx)
    assert y.dtype == torch.float64 and torch.equal(stream(tok64.stream_decoder(), idx, cuts(idx.shape[-1], 6, 7)), y)
