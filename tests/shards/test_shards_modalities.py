"""Audio, video and depth folders through `fsqtok tokenize`: tokens equal `encode` of the same
input, the stage axis kept for residual FSQ, rate/duration columns, label sidecars, bad files."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from fsqtok.datasets.samples import sample_audio, sample_depth, sample_videos
from fsqtok.media import read_depth, read_video, write_audio, write_depth, write_video
from fsqtok.shards import ShardDataset, read_manifest, verify
from fsqtok.shards.cli import main
from fsqtok.tokenizers import AudioTokenizer, DepthTokenizer, VideoTokenizer


def _run(tok_dir, data, out, *extra):
    return main(["-t", str(tok_dir), "--data", str(data), "-o", str(out), "--shard-size", "2", "--batch-size", "2",
                 "--num-workers", "0", "--quiet", *extra])


def _encode(tok, x):
    torch.set_flush_denormal(True)  # as the pipeline does on CPU (zero padding makes denormals)
    try:
        with torch.inference_mode():
            return tok.encode(x)
    finally:
        torch.set_flush_denormal(False)


def test_audio_clip_stage_axis_and_csv_labels(tmp_path):
    tok = AudioTokenizer().eval()
    tok.save_pretrained(tmp_path / "tok")
    sr = tok.config.sample_rate
    wav = sample_audio(3, 0.3, sr, seed=1)
    lengths = [0.3, 0.2, 0.3]  # the 0.2 s file is zero-padded to the clip
    (tmp_path / "a").mkdir()
    for i, s in enumerate(lengths):
        write_audio(tmp_path / "a" / f"{i}.wav", wav[i, :, :round(s * sr)], sr)
    (tmp_path / "a" / "3.flac").write_bytes(b"fLaC broken")
    (tmp_path / "labels.csv").write_text("file_name,label\n0.wav,alice\n2.wav,bob\n")
    out = tmp_path / "out"
    assert _run(tmp_path / "tok", tmp_path / "a", out, "--clip-seconds", "0.25", "--labels",
                str(tmp_path / "labels.csv")) == 0
    ds = ShardDataset(out)
    assert ds.keys == ["0.wav", "1.wav", "2.wav"]
    n = round(0.25 * sr)
    x = torch.zeros(3, 1, n)
    for i, s in enumerate(lengths):
        m = min(n, round(s * sr))
        x[i, :, :m] = wav[i, :, :m]
    expected = _encode(tok, x)
    assert expected.shape[1] == tok.num_stages == 4  # residual FSQ: the stage axis is kept
    assert torch.equal(torch.stack([ds[i]["tokens"] for i in range(3)]), expected)
    assert [ds[i]["label"] for i in range(3)] == ["alice", None, "bob"]
    assert ds[1]["sample_rate"] == sr and ds[1]["duration"] == pytest.approx(0.2)
    t = pq.read_table(out / "data" / "train-00000.parquet")
    assert t["sample_rate"].to_pylist() == [sr, sr] and t["duration"].to_pylist() == pytest.approx([0.25, 0.2])
    assert t.schema.field("tokens").type.value_type == "uint16"
    m = read_manifest(out)
    assert [f["key"] for f in m["failures"]] == ["3.flac"] and "3.flac" in m["failures"][0]["reason"]
    assert m["totals"]["failed"] == 1 and verify(out) == []


def test_video_fps_duration_uint16(tmp_path):
    tok = VideoTokenizer().eval()
    tok.save_pretrained(tmp_path / "tok")
    v = sample_videos(2, frames=5, size=32, seed=0)
    (tmp_path / "v" / "walk").mkdir(parents=True)
    for i in range(2):
        write_video(tmp_path / "v" / "walk" / f"{i}.mp4", v[i], fps=8)
    (tmp_path / "v" / "bad.mp4").write_bytes(b"\x00" * 64)
    out = tmp_path / "out"
    assert _run(tmp_path / "tok", tmp_path / "v", out, "--num-frames", "5", "--labels", "folder") == 0
    ds = ShardDataset(out)
    assert ds.keys == ["walk/0.mp4", "walk/1.mp4"] and ds[0]["label"] == "walk"
    x = torch.stack([read_video(tmp_path / "v" / k, num_frames=5)[0] for k in ds.keys])
    assert torch.equal(torch.stack([ds[i]["tokens"] for i in range(2)]), _encode(tok, x))
    t = pq.read_table(out / "data")  # shard 0: bad.mp4 (failed) + walk/0.mp4; shard 1: walk/1.mp4
    assert t.schema.field("tokens").type.value_type == "uint16"  # 64,000 codes
    assert t["fps"].to_pylist() == [8.0, 8.0] and t["duration"].to_pylist() == pytest.approx([5 / 8] * 2)
    assert read_manifest(out)["failures"][0]["key"] == "bad.mp4" and verify(out) == []


def test_depth_npy_with_invalid_pixels(tmp_path):
    tok = DepthTokenizer().eval()
    tok.save_pretrained(tmp_path / "tok")
    d = sample_depth(3, 32, seed=2)
    d[0, 0, :4, :4] = float("nan")
    (tmp_path / "d").mkdir()
    for i in range(3):
        write_depth(tmp_path / "d" / f"{i}.npy", d[i])
    out = tmp_path / "out"
    assert _run(tmp_path / "tok", tmp_path / "d", out) == 0
    ds = ShardDataset(out)
    x = torch.stack([read_depth(tmp_path / "d" / k) for k in ds.keys])
    assert torch.isnan(x[0]).any()  # invalid pixels are kept as invalid, not a failure
    assert torch.equal(torch.stack([ds[i]["tokens"] for i in range(3)]), _encode(tok, x))
    assert np.array_equal(pq.read_table(out / "data" / "train-00001.parquet")["shape"].to_pylist(), [[4, 4]])
    assert verify(out) == []
