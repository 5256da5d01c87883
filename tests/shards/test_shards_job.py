"""tokenize(job) as a library call: a typed job, checked settings, the same bytes as the CLI."""

import dataclasses

import pytest

from conftest import args_for, read_bytes
from fsqtok.shards import JobError, TokenizeJob, tokenize
from fsqtok.shards.cli import build_parser, job_from_args


def test_library_call_writes_what_the_cli_writes(shard_env, done, tmp_path):
    job = TokenizeJob(tokenizer=shard_env["tok"], data=str(shard_env["imgs"]), output=tmp_path / "out",
                      shard_size=4, batch_size=3, num_workers=0, labels="folder")
    summary = tokenize(job)
    assert summary["rows"] == 14 and summary["failed"] == 0 and summary["shards"] == 4
    assert summary["first_failure"] is None and summary["rank"] == 0
    assert read_bytes(tmp_path / "out") == read_bytes(done)
    assert tokenize(job)["shards_written"] == 0  # a second call resumes: nothing left to do


def test_every_flag_is_a_job_field():
    fields = {f.name for f in dataclasses.fields(TokenizeJob)}
    dests = {a.dest for a in build_parser()._actions} - {"help", "quiet", "debug"}
    assert dests == fields
    job = job_from_args(build_parser().parse_args(["-t", "T", "--data", "D", "-o", "O", "--size", "8"]))
    assert job == TokenizeJob(tokenizer="T", data="D", output="O", size=8)


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"num_workers": -1}, "--num-workers must be >= 0"),
    ({"fps": float("nan")}, "--fps must be > 0"),
    ({"data_format": "csv"}, "--data-format must be one of"),
    ({"device": "bogus"}, "--device bogus: not a torch device"),
])
def test_bad_settings_are_job_errors(shard_env, tmp_path, change, message):
    job = TokenizeJob(tokenizer=shard_env["tok"], data=str(shard_env["imgs"]), output=tmp_path / "o", **change)
    with pytest.raises(JobError, match=message):
        tokenize(job)
    assert not (tmp_path / "o").exists()


def test_cli_args_still_parse_as_before(shard_env, tmp_path):
    args = build_parser().parse_args(args_for(shard_env, tmp_path / "o"))
    assert job_from_args(args).labels == "folder" and args.quiet
