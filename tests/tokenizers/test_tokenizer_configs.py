"""Config dataclasses: defaults build, validation names the field in one line, JSON round trip."""

import dataclasses

import pytest

from fsqtok.tokenizers import AudioConfig, ConfigError, DepthConfig, ImageConfig, VideoConfig

CONFIGS = [ImageConfig, DepthConfig, AudioConfig, VideoConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_defaults_validate_and_round_trip_through_dicts(cls):
    cfg = cls()
    data = cfg.to_dict()
    assert isinstance(data["levels"], list)
    assert cls.from_dict(data) == cfg
    assert cls.from_dict({}) == cfg  # missing fields take their defaults


@pytest.mark.parametrize("cls", CONFIGS)
def test_configs_are_frozen(cls):
    cfg = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.levels = (5, 5)
    assert dataclasses.replace(cfg, levels=[7, 5, 5]).levels == (7, 5, 5)


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (ImageConfig, {"quantizer": "pq"}, r"ImageConfig.quantizer: must be one of 'fsq', 'rfsq', 'vq'; got 'pq'"),
        (ImageConfig, {"levels": ()}, r"ImageConfig.levels: expected a non-empty list"),
        (ImageConfig, {"levels": (8, 1)}, r"ImageConfig.levels: expected a list of ints >= 2"),
        (ImageConfig, {"levels": (8, 2)}, r"ImageConfig.levels: levels\[1\]=2"),
        (ImageConfig, {"levels": "8555"}, r"ImageConfig.levels: expected a non-empty list"),
        (ImageConfig, {"num_stages": 2}, r"ImageConfig.num_stages: must be 1 for quantizer='fsq'"),
        (ImageConfig, {"quantize_dropout": True}, r"ImageConfig.quantize_dropout: needs quantizer='rfsq'"),
        (ImageConfig, {"quantizer": "rfsq", "num_stages": 0}, r"ImageConfig.num_stages: must be >= 1"),
        (ImageConfig, {"latent_channels": 0}, r"ImageConfig.latent_channels: must be >= 1"),
        (ImageConfig, {"base_channels": 8.0}, r"ImageConfig.base_channels: expected an int"),
        (ImageConfig, {"mid_attention": 1}, r"ImageConfig.mid_attention: expected true/false"),
        (ImageConfig, {"channel_mult": (1, 0)}, r"ImageConfig.channel_mult: expected a list of ints >= 1"),
        (AudioConfig, {"channels": "stereo"}, r"AudioConfig.channels: must be one of 'mono', 'independent'"),
        (AudioConfig, {"sample_rate": 0}, r"AudioConfig.sample_rate: must be >= 1"),
        (AudioConfig, {"strides": ()}, r"AudioConfig.strides: expected a non-empty list"),
        (AudioConfig, {"causal": "yes"}, r"AudioConfig.causal: expected true/false"),
        (VideoConfig, {"fps": -1.0}, r"VideoConfig.fps: must be > 0"),
        (DepthConfig, {"max_depth": float("nan")}, r"DepthConfig.max_depth: expected a finite number"),
    ],
)
def test_invalid_values_name_the_field(cls, kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        cls(**kwargs)
    assert "\n" not in str(info.value)


def test_unknown_fields_are_rejected():
    with pytest.raises(ConfigError, match=r"AudioConfig: unknown field\(s\) hop, stride"):
        AudioConfig.from_dict({"stride": 2, "hop": 3})
