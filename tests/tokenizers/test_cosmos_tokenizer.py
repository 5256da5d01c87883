"""fsqtok.tokenizers.cosmos: the released variants' sizes, the tokenizer API, and the config's checks."""

import json
import re
from pathlib import Path

import pytest
import torch

import fsqtok
from fsqtok.encoders.cosmos_image import CosmosImageDecoder, CosmosImageEncoder
from fsqtok.encoders.cosmos_video import CosmosVideoDecoder, CosmosVideoEncoder
from fsqtok.hub import ConfigError
from fsqtok.tokenizers import CosmosImageConfig, CosmosImageTokenizer, CosmosVideoConfig, CosmosVideoTokenizer

RELEASED = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "cosmos" / "released_params.json").read_text())
DROPPED = ("dropout", "name", "quantizer", "encoder", "decoder", "num_groups", "num_quantizers")


@pytest.mark.parametrize("variant", sorted(RELEASED))
def test_released_variants_build_with_the_reference_parameter_counts(variant):
    """Each released variant, built from the reference kwargs recorded with the fixtures, has the
    parameter count the reference code gives (tests/fixtures/cosmos/released_params.json)."""
    kwargs = {k: v for k, v in RELEASED[variant]["kwargs"].items() if k not in DROPPED}
    video = variant.startswith("DV")
    if not video:
        kwargs.pop("z_factor")
    config = (CosmosVideoConfig if video else CosmosImageConfig)(**kwargs)
    net = config.network_kwargs()
    if video:
        net.update(z_factor=config.z_factor, temporal_compression=config.temporal_compression)
    with torch.device("meta"):  # sizes only: no memory, no init time
        nets = ((CosmosVideoEncoder(3, **net), CosmosVideoDecoder(3, **net, legacy_mode=False)) if video
                else (CosmosImageEncoder(3, **net), CosmosImageDecoder(3, **net)))
    assert sum(p.numel() for m in nets for p in m.parameters()) == RELEASED[variant]["parameters"]


def _tiny_image() -> CosmosImageTokenizer:
    return CosmosImageTokenizer(CosmosImageConfig(channels=32, channels_mult=(1, 1), num_res_blocks=1,
                                                  z_channels=8, spatial_compression=8, patch_size=2)).eval()


def _tiny_video() -> CosmosVideoTokenizer:
    return CosmosVideoTokenizer(CosmosVideoConfig(channels=8, channels_mult=(1, 1, 1), num_res_blocks=1, z_channels=8,
                                                  spatial_compression=8, temporal_compression=4, patch_size=2)).eval()


def test_image_tokens_round_trip_through_the_hub_folder(tmp_path):
    tok = _tiny_image()
    x = torch.rand(2, 3, 20, 28) * 2 - 1  # not multiples of 8: padded, then cropped back
    idx = tok.encode(x)
    assert idx.dtype == torch.int64 and idx.shape == (2, 3, 4) == tok.tokens_shape(x.shape)
    assert tok.decode(idx, input_shape=x.shape).shape == x.shape
    tok.save_pretrained(tmp_path / "m")
    loaded = fsqtok.load_pretrained(tmp_path / "m")
    assert type(loaded) is CosmosImageTokenizer and torch.equal(loaded.encode(x), idx)
    assert loaded.summary()["compression"] == "8x8 (spatial)" and loaded.codebook_size == 64000


def test_video_tokens_shape_and_no_chunked_encoding(tmp_path):
    tok = _tiny_video()
    x = torch.rand(1, 3, 7, 16, 16) * 2 - 1  # 7 frames: padded to 9 = 1 + 2 * 4
    idx = tok.encode(x)
    assert idx.shape == (1, 3, 2, 2) == tok.tokens_shape(x.shape)
    assert tok.decode(idx, input_shape=x.shape).shape == x.shape
    tok.save_pretrained(tmp_path / "v")
    assert torch.equal(fsqtok.load_pretrained(tmp_path / "v").encode(x), idx)
    with pytest.raises(NotImplementedError, match="encode_chunked is not available"):
        tok.encode_chunked(x, chunk_frames=4)


@pytest.mark.parametrize("field, value, message", [
    ("embedding_dim", 4, "embedding_dim: must equal len(levels) = 6, got 4"),
    ("channels", 48, "channels: must be a multiple of 32 (GroupNorm with 32 groups), got 48"),
    ("spatial_compression", 12, "spatial_compression: must be a power of 2, got 12"),
    ("out_channels", 1, "out_channels: must equal in_channels (3), got 1"),
    ("patch_method", "dct", "patch_method: must be one of 'haar', 'rearrange'; got 'dct'"),
    ("quantizer", "rfsq", "quantizer: Cosmos tokenizers use plain FSQ"),
])
def test_config_checks(field, value, message):
    with pytest.raises(ConfigError, match="^" + re.escape(f"CosmosImageConfig.{message}")):
        CosmosImageConfig(**{field: value})


def test_video_config_checks():
    assert CosmosVideoConfig(channels=8).norm_groups == 1  # the 3D blocks use one group: any width
    with pytest.raises(ConfigError, match=r"temporal_compression: must be a power of 2 >= patch_size \(4\), got 2"):
        CosmosVideoConfig(temporal_compression=2)
