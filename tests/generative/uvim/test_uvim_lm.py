"""UViM stage II: teacher forcing, greedy decoding of a learned toy mapping, and the pipeline's save/load."""

from __future__ import annotations

import json

import pytest
import torch

from fsqtok.generative.uvim.stage1 import UViMConfig, UViMStage1
from fsqtok.generative.uvim.lm import UViMLM, UViMLMConfig, UViMPipeline
from fsqtok.hub import CheckpointError, ConfigError

TINY = dict(vocab_size=12, num_tokens=6, image_size=16, context_channels=3, patch_size=8, width=32,
            encoder_layers=1, decoder_layers=1, heads=2)


def toy(n: int, seed: int = 0, noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose top-left quadrant's brightness (one of 4 levels) and bottom-right quadrant's (one of 3)
    decide a code: tokens = [a, b, a+b, (a*b) % 12, 11 - a, b + 4]. The first 12 samples are the 12 cases."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randint(0, 4, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)
    k = min(n, 12)
    a[:k], b[:k] = torch.arange(k) // 3, torch.arange(k) % 3
    x = noise * torch.randn(n, 3, 16, 16, generator=g)
    x[:, :, :8, :8] += (a.float() / 3 * 2 - 1).view(n, 1, 1, 1)
    x[:, :, 8:, 8:] += (b.float() / 2 * 2 - 1).view(n, 1, 1, 1)
    tokens = torch.stack([a, b, a + b, (a * b) % 12, 11 - a, b + 4], 1)
    return x, tokens


def test_teacher_forcing_is_causal():
    torch.manual_seed(0)
    lm = UViMLM(UViMLMConfig(**TINY)).eval()
    x, t = toy(2)
    t2 = t.clone()
    t2[:, 3:] = (t2[:, 3:] + 1) % 12
    a, b = lm(x, t), lm(x, t2)
    assert a.shape == (2, 6, 12)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)  # position i sees tokens < i only
    assert not torch.allclose(a[:, 4:], b[:, 4:])


STAGE1_STEM = dict(stem="stage1", stem_width=8, stem_blocks=1, stem_down=1)


@pytest.mark.parametrize("stem", [{"stem": "patch"}, {"stem": "conv"}, STAGE1_STEM], ids=["patch", "conv", "stage1"])
def test_lm_learns_a_toy_mapping_and_decodes_it_greedily(stem):
    torch.manual_seed(0)
    lm = UViMLM(UViMLMConfig(**TINY, **stem))
    opt = torch.optim.AdamW(lm.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 100)
    x, t = toy(12)
    for _ in range(100):
        loss, acc = lm.loss(x, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    assert acc == 1.0 and loss < 0.05
    lm.eval()
    xv, tv = toy(32, seed=1, noise=0.02)
    assert torch.equal(lm.generate(xv), tv)  # greedy decoding reproduces the mapping on new (noisy) samples
    sampled = lm.generate(xv, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (32, 6) and (sampled == tv).float().mean() > 0.9


def test_bad_inputs():
    lm = UViMLM(UViMLMConfig(**TINY))
    x, t = toy(2)
    with pytest.raises(ValueError, match=r"tokens must be \(B, 6\) in \[0, 12\)"):
        lm(x, t + 12)
    with pytest.raises(ValueError, match="context must be"):
        lm(x[:, :1], t)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(x, temperature=-1)
    with pytest.raises(ConfigError, match="patch_size"):
        UViMLMConfig(**{**TINY, "patch_size": 5})
    with pytest.raises(ConfigError, match="stem"):
        UViMLMConfig(**TINY, stem="resnet")
    with pytest.raises(ConfigError, match="stage1 needs stem_width >= 1"):
        UViMLMConfig(**TINY, stem="stage1")  # the trunk's shape comes from the stage-I model (for_stage1)
    with pytest.raises(ConfigError, match="divisible by 2\\*\\*stem_down"):
        UViMLMConfig(**{**TINY, **STAGE1_STEM, "stem_down": 4})


def test_conv_stem_sees_the_image_before_the_patches():
    torch.manual_seed(0)
    patch, conv = UViMLM(UViMLMConfig(**TINY)), UViMLM(UViMLMConfig(**TINY, stem="conv"))
    assert isinstance(patch.stem, torch.nn.Identity) and len(conv.stem) == 4
    assert conv.patch.in_channels == TINY["width"] // 2 and patch.patch.in_channels == 3
    x = toy(2)[0]
    assert conv.encode(x).shape == patch.encode(x).shape == (2, 4, TINY["width"])
    assert set(conv.state_dict()) - set(patch.state_dict()) == {f"stem.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}


def test_stage1_stem_starts_from_the_stage1_trunk():
    torch.manual_seed(0)
    s1 = UViMStage1(UViMConfig(image_size=16, width=16, blocks=1, feature_down=1, code_grid=4)).eval()
    lm = UViMLM(UViMLMConfig.for_stage1(s1, "stage1", stem="stage1", width=32, encoder_layers=1, decoder_layers=1,
                                        heads=2)).eval()
    c = lm.config
    assert (c.stem_width, c.stem_blocks, c.stem_down) == (16, 1, 1) and lm.patch.kernel_size == (4, 4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ctx = s1.task.context(x)
    assert not torch.allclose(lm.stem(ctx), s1.base_context(ctx))
    lm.init_stem_from(s1)
    assert torch.equal(lm.stem(ctx), s1.base_context(ctx))  # the stage-I features, exactly
    assert lm.encode(ctx).shape == (2, 4, 32)
    other = UViMStage1(UViMConfig(image_size=16, width=8, blocks=1, feature_down=1, code_grid=4))
    with pytest.raises(CheckpointError, match="does not fit this LM's stem"):
        lm.init_stem_from(other)
    with pytest.raises(ValueError, match="stem='patch', not 'stage1'"):
        UViMLM(UViMLMConfig(**TINY)).init_stem_from(s1)


def test_pipeline_names_its_stage1_and_round_trips(tmp_path):
    torch.manual_seed(0)
    s1 = UViMStage1(UViMConfig(image_size=16, width=16, blocks=1, feature_down=1, code_grid=4)).eval()
    lm = UViMLM(UViMLMConfig.for_stage1(s1, "stage1", width=32, encoder_layers=1, decoder_layers=1, heads=2))
    assert lm.config.vocab_size == 4375 and lm.config.num_tokens == 16 and lm.config.stage1_hash == s1.weights_hash()
    lm.attach_stage1(s1).save_pretrained(tmp_path / "lm")
    saved = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert saved["stage1"] == "stage1" and saved["stage1_hash"] == s1.weights_hash()
    pipe = UViMPipeline.from_pretrained(tmp_path / "lm")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    pred, tokens = pipe.predict(x)
    assert pred.shape == (2, 1, 16, 16) and tokens.shape == (2, 16)
    assert torch.equal(tokens, lm.eval().generate(x))
    assert torch.equal(pred, s1.predict(x, tokens))
    pred5, tokens5 = pipe.predict(x, num_tokens=5)  # a decoded prefix: the greedy code's first 5 tokens
    assert torch.equal(tokens5, tokens[:, :5]) and torch.equal(pred5, s1.predict(x, tokens[:, :5]))
    with pytest.raises(ValueError, match="num_tokens must be in 1..16"):
        lm.generate(x, num_tokens=0)
    # another stage-I model (same architecture, other weights) is refused
    other = UViMStage1(s1.config)
    with pytest.raises(CheckpointError, match="not those the LM was trained on"):
        UViMPipeline(other, lm)
    other.save_pretrained(tmp_path / "lm" / "stage1")
    with pytest.raises(CheckpointError, match="not those the LM was trained on"):
        UViMPipeline.from_pretrained(tmp_path / "lm")


def small_pair() -> tuple[UViMStage1, UViMLM]:
    torch.manual_seed(0)
    s1 = UViMStage1(UViMConfig(image_size=16, width=8, blocks=1, feature_down=1, code_grid=2)).eval()
    lm = UViMLM(UViMLMConfig.for_stage1(s1, "stage1", width=16, encoder_layers=1, decoder_layers=1, heads=2))
    return s1, lm.eval()


def test_a_pushed_lm_loads_back_from_the_hub_with_its_stage1(tmp_path, fake_hub):
    """Issue 17 §2.4: push_to_hub re-saves a loaded LM; the repo must hold stage1/ and load back from the Hub
    (the Hub API and the download are faked from a local store: no network)."""
    s1, lm = small_pair()
    lm.attach_stage1(s1).save_pretrained(tmp_path / "lm")
    UViMLM.from_pretrained(tmp_path / "lm").push_to_hub("me/uvim-lm")  # as Checkpointer.finish pushes
    assert (fake_hub / "me/uvim-lm/stage1/model.safetensors").read_bytes() == (
        tmp_path / "lm/stage1/model.safetensors").read_bytes()
    pipe = UViMPipeline.from_pretrained("me/uvim-lm")
    assert pipe.stage1.weights_hash() == s1.weights_hash() and pipe.lm.weights_hash() == lm.weights_hash()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(pipe.predict(x)[1], lm.generate(x))


def test_an_lm_folder_is_self_contained_wherever_it_is_saved(tmp_path):
    s1, lm = small_pair()
    lm.attach_stage1(s1).save_pretrained(tmp_path / "a")
    UViMLM.from_pretrained(tmp_path / "a").save_pretrained(tmp_path / "b")  # a loaded LM keeps its stage I
    import shutil

    shutil.rmtree(tmp_path / "a")
    pipe = UViMPipeline.from_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b/config.json").read_text())["stage1"] == "stage1"
    assert pipe.stage1.weights_hash() == s1.weights_hash()
    _, bare = small_pair()  # names stage1/ but holds no stage-I model: refused before anything is written
    with pytest.raises(CheckpointError, match=r"holds none; call attach_stage1\(stage1\) first"):
        bare.save_pretrained(tmp_path / "c")
    assert not (tmp_path / "c" / "config.json").exists()


def test_an_lm_repo_loads_with_its_stage1_from_the_offline_hub_cache(tmp_path):
    """The stage1/ sub-folder of a Hub repo resolves through huggingface_hub's own cache (local_files_only)."""
    import shutil

    s1, lm = small_pair()
    lm.attach_stage1(s1).save_pretrained(tmp_path / "lm")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--me--uvim-lm"
    shutil.copytree(tmp_path / "lm", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    pipe = UViMPipeline.from_pretrained("me/uvim-lm", local_files_only=True, cache_dir=str(tmp_path / "cache"))
    assert pipe.stage1.weights_hash() == s1.weights_hash() and pipe.lm.weights_hash() == lm.weights_hash()
