"""benchmarks/reproduce/uvim.py at a toy scale (2 steps per run): what it writes, the panoptic bootstrap
intervals and paired difference, and that a rerun trains nothing again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.reproduce import uvim as bench_uvim
from fsqtok.generative.uvim.tasks import panoptic_quality_from_stats

ROOT = Path(__file__).resolve().parents[3]

TOY = ["--tasks", "panoptic", "--size", "16", "--width", "8", "--lm-width", "16", "--lm-layers", "1",
       "--num-train", "32", "--lm-num-train", "32", "--num-test", "8", "--steps1", "2", "--steps2", "2", "--batch-size", "4",
       "--code-prefixes", "1", "--quantizers", "fsq"]  # FSQ only, to stay fast


def bench(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "benchmarks.reproduce.uvim", "--output-dir", str(out), *TOY,
                           *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_panoptic_at_toy_scale_writes_tables_with_intervals_and_resumes(tmp_path):
    out = tmp_path / "bench"
    done = bench(out, "--copy-to", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((out / "uvim_panoptic.json").read_text())
    assert (tmp_path / "uvim_panoptic.json").read_text() == (out / "uvim_panoptic.json").read_text()
    assert saved["command"].startswith("python -m benchmarks.reproduce.uvim --tasks panoptic --quantizers fsq --size 16 --width 8")
    res = saved["results"]["panoptic"]["0"]
    assert set(res) == {"no_code", "fsq"}
    row = res["fsq"]["synthetic test"]
    assert {"stage1", "stage2", "stage1_first1", "stage2_first1"} <= set(row) and "pq" in res["no_code"]["synthetic test"]["no_code"]
    s2 = row["stage2"]
    assert {"pq_ci95", "pq_minus_no_code", "pq_minus_no_code_ci95"} <= set(s2) and "pq_ci95" in row["stage1"]
    assert 0 <= s2["token_accuracy"] <= 1 and res["fsq"]["train_wall_s"]["stage2"] > 0
    table = (out / "uvim_panoptic.md").read_text().splitlines()
    assert table[0].startswith("`python -m benchmarks.reproduce.uvim --tasks panoptic")
    assert sum(line.startswith(("| no_code |", "| fsq |")) for line in table) == 2
    assert "| 43.2 |" in next(line for line in table if line.startswith("| fsq |"))  # the paper's PQ beside ours
    logs = {p.name: p.read_text() for p in (out / "logs").iterdir()}
    assert len(logs) == 3  # 2 stage-I runs (no code, FSQ), 1 stage-II run
    again = bench(out, "--skip-eval")
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p.name: p.read_text() for p in (out / "logs").iterdir()} == logs  # finished runs are not trained again


def test_intervals_and_paired_differences():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(200, generator=g) * 2
    v = ref + 0.1 + 0.05 * torch.randn(200, generator=g)  # worse than ref on every image, by about 0.1
    out = bench_uvim.interval("depth", v, ref)
    assert out["rmse_mean_per_image"] == pytest.approx(float(v.mean()))
    assert out["rmse_minus_no_code"] == pytest.approx(0.1, abs=0.02)
    assert out["rmse_minus_no_code_ci95"] == pytest.approx(1.96 * float((v - ref).std()) / 200 ** 0.5)
    assert out["rmse_minus_no_code_ci95"] < out["rmse_ci95"] / 5  # pairing removes the spread between images
    # panoptic: (scenes, 4, categories) statistics; the same scenes with one more false positive each
    iou = torch.rand(100, 3, generator=g)
    tp = (iou > 0.3).double()
    ref_stats = torch.stack([iou * tp, tp, 1 - tp, 1 - tp], 1).double()
    worse = ref_stats.clone()
    worse[:, 2] += 1
    out = bench_uvim.interval("panoptic", worse, ref_stats, reps=500)
    whole = panoptic_quality_from_stats(worse.sum(0))["pq"] - panoptic_quality_from_stats(ref_stats.sum(0))["pq"]
    assert out["pq_minus_no_code"] == pytest.approx(whole) and whole < -5
    assert 0 < out["pq_minus_no_code_ci95"] < out["pq_ci95"]
    same = bench_uvim.interval("panoptic", ref_stats[:1].expand(50, -1, -1), reps=100)
    assert same["pq_ci95"] == pytest.approx(0.0, abs=1e-9) and "pq_minus_no_code" not in same  # identical scenes: no spread


def test_command_line_names_only_what_differs_from_the_defaults():
    args = bench_uvim.parser().parse_args(["--tasks", "depth", "--seeds", "1", "2", "--no-no-code", "--jobs", "1",
                                           "--output-dir", "/tmp/x", "--lm-stem", "conv"])
    assert bench_uvim.command_line(args) == ("python -m benchmarks.reproduce.uvim --tasks depth --seeds 1 2 --lm-stem conv "
                                             "--no-no-code")
    assert bench_uvim.command_line(bench_uvim.parser().parse_args([])) == "python -m benchmarks.reproduce.uvim"
