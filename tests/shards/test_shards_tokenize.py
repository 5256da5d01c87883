"""Tokenizing a folder into shards: round trip, resume, bad input, refusals, datasets loading, verify."""

import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import NUM_IMAGES, args_for, read_bytes
from fsqtok import load_tokenizer
from fsqtok.files import temporary_path
from fsqtok.media import read_image
from fsqtok.shards import ShardDataset, read_manifest, token_dtype, verify
from fsqtok.shards.verify import main as verify_main
from fsqtok.shards import encoders, pipeline
from fsqtok.shards.cli import main
from fsqtok.shards import writer



def test_token_dtype():
    assert token_dtype(256) == np.uint8 and token_dtype(257) == np.uint16
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_round_trip_equals_encode(shard_env, done):
    tok = load_tokenizer(shard_env["tok"]).eval()
    ds = ShardDataset(done)
    keys = sorted(p.relative_to(shard_env["imgs"]).as_posix() for p in shard_env["imgs"].rglob("*.png"))
    assert ds.keys == keys and len(ds) == NUM_IMAGES
    x = torch.stack([read_image(shard_env["imgs"] / k) for k in keys])
    with torch.inference_mode():
        expected = tok.encode(x)
    got = torch.stack([ds[i]["tokens"] for i in range(len(ds))])
    assert got.dtype == torch.int64 and torch.equal(got, expected)
    assert ds[0]["label"] == keys[0].split("/")[0]
    m = read_manifest(done)
    assert m["totals"] == {"samples": NUM_IMAGES, "rows": NUM_IMAGES, "tokens": int(expected.numel()),
                           "failed": 0, "shards": 4}
    assert [s["rows"] for s in m["shards"]] == [4, 4, 4, 2]
    assert m["tokenizer"]["weights_sha256"] == tok.weights_hash()  # the one identity MaskGIT/UViM/token files use
    assert m["tokenizer"]["hub_config"]["modality"] == "image"
    t = pq.read_table(done / "data" / "train-00000.parquet")
    assert t.schema.field("tokens").type.value_type == "uint16"
    assert verify(done) == []


def test_identity_is_the_weights_hash_even_when_the_file_carries_other_metadata(shard_env, tmp_path):
    """A folder saved by an older fsqtok (other safetensors metadata) is named by the same hash."""
    from safetensors.torch import load_file, save_file

    from fsqtok.shards.manifest import tokenizer_identity

    old = tmp_path / "old"
    shutil.copytree(shard_env["tok"], old)
    weights = old / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt", "fsqtok_version": "0.0.9"})
    tok = load_tokenizer(old)
    assert tokenizer_identity(tok, str(old))["weights_sha256"] == load_tokenizer(shard_env["tok"]).weights_hash()


class Crash(BaseException):
    """Stands for a kill -9: nothing in tokenize catches it."""


def crash_after(monkeypatch, k: int) -> None:
    """The (k+1)-th shard write leaves a half-written temporary file and 'kills' the run."""
    real, calls = pipeline.write_shard, []

    def write_shard(out, i, *args):
        calls.append(i)
        if len(calls) <= k:
            return real(out, i, *args)
        if len(calls) == k + 1:
            temporary_path(writer.shard_paths(out, i)[0]).write_bytes(b"PAR1 partial")
        raise Crash

    monkeypatch.setattr(pipeline, "write_shard", write_shard)


def test_resume_after_crash_is_byte_identical(shard_env, done, tmp_path, monkeypatch):
    out = tmp_path / "out"
    crash_after(monkeypatch, 2)
    with pytest.raises(Crash):
        main(args_for(shard_env, out))
    monkeypatch.undo()
    assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in (out / "data").iterdir()) == [".train-00002.parquet.tmp", "train-00000.parquet",
                                                               "train-00001.parquet"]
    assert verify(out)  # unfinished output is not OK
    assert main(args_for(shard_env, out)) == 0
    assert read_bytes(out) == read_bytes(done)
    before = read_bytes(out)
    assert main(args_for(shard_env, out)) == 0  # re-run of a finished output: nothing changes
    assert read_bytes(out) == before


def test_resume_rewrites_a_shard_changed_after_it_was_written(shard_env, done, tmp_path):
    """Issue 10.17: resume checks each complete shard's sha256 against its sidecar, as verify does."""
    out = tmp_path / "out"
    shutil.copytree(done, out)
    (out / "manifest.json").unlink()  # an interrupted run: shards complete, manifest not yet written
    shard = out / "data" / "train-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-40] + bytes(40))  # corrupted on disk after it was written
    assert main(args_for(shard_env, out)) == 0
    assert read_bytes(out) == read_bytes(done) and verify(out) == []


def test_corrupt_files_recorded_other_keys_intact(shard_env, done, tmp_path):
    imgs = tmp_path / "imgs"
    import shutil
    shutil.copytree(shard_env["imgs"], imgs)
    (imgs / "cat" / "004b.png").write_bytes(b"not a png at all")
    (imgs / "dog" / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    args = args_for(shard_env, out)
    args[args.index("--data") + 1] = str(imgs)
    assert main(args) == 0
    m = read_manifest(out)
    assert m["totals"]["failed"] == 2 and m["totals"]["rows"] == NUM_IMAGES
    assert sorted(f["key"] for f in m["failures"]) == ["cat/004b.png", "dog/empty.png"]
    assert all(f["reason"] for f in m["failures"])
    ds, ref = ShardDataset(out), ShardDataset(done)
    assert ds.keys == ref.keys
    by_key = {ref.keys[i]: ref[i]["tokens"] for i in range(len(ref))}
    assert all(torch.equal(ds[i]["tokens"], by_key[ds.keys[i]]) for i in range(len(ds)))
    assert verify(out) == []


def test_refuses_other_tokenizer_or_source(shard_env, done, tmp_path, capsys):
    out = tmp_path / "out"
    shutil_copy(done, out)
    args = args_for(shard_env, out)
    args[1] = shard_env["tok_other"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different tokenizer" in err and "--overwrite" in err
    assert main(args_for(shard_env, out, "--size", "16")) == 1
    assert "different selection" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert read_manifest(out)["tokenizer"]["source"] == shard_env["tok_other"]
    assert verify(out) == []


def shutil_copy(src, dst):
    import shutil
    shutil.copytree(src, dst)


def test_bad_arguments_one_line(shard_env, tmp_path, capsys):
    assert main(["-t", shard_env["tok"], "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert main(args_for(shard_env, tmp_path / "o", "--shard-size", "0")) == 2
    assert main(["--data", "x"]) == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    assert main(args_for(shard_env, tmp_path / "full")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "not an fsqtok shards output" in err[-1]


def test_load_dataset_reads_output(done, tmp_path):
    import datasets

    d = datasets.load_dataset("parquet", data_dir=str(done), cache_dir=str(tmp_path / "cache"))
    assert list(d) == ["train"]
    train = d["train"]
    assert train.num_rows == NUM_IMAGES and train.column_names == ["key", "tokens", "shape", "label"]
    ref = ShardDataset(done)
    assert train["key"] == ref.keys
    assert np.array_equal(np.array(train[5]["tokens"]).reshape(train[5]["shape"]), ref[5]["tokens"].numpy())


def test_verify_catches_tampering(done, tmp_path, capsys):
    out = tmp_path / "out"
    shutil_copy(done, out)
    assert verify_main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"OK: {NUM_IMAGES} rows in 4 shards"
    # rewrite shard 1 with an out-of-range token (and a valid Parquet file)
    p = out / "data" / "train-00001.parquet"
    t = pq.read_table(p).to_pydict()
    t["tokens"][0][0] = 5000
    import pyarrow as pa
    pq.write_table(pa.table(t, schema=pq.read_schema(p)), p)
    (out / "data" / "train-00003.parquet").unlink()
    (out / "data" / "train-00009.parquet").write_bytes(b"x")
    problems = verify(out)
    text = "\n".join(problems)
    assert "train-00001.parquet: checksum mismatch" in text
    assert "train-00001.parquet: 1 token(s) >= codebook size 1000" in text
    assert "train-00003.parquet: missing shard" in text
    assert "train-00009.parquet: shard not listed" in text
    assert verify_main(["verify", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(problems) >= 4
    assert verify_main(["verify", str(tmp_path / "missing")]) == 2
    assert verify_main(["bogus"]) == 2


def test_cli_delegates(done, capsys):
    from fsqtok.cli import main as cli_main
    assert cli_main(["shards", "verify", str(done)]) == 0
    assert "OK:" in capsys.readouterr().out


def test_out_of_range_tokens_fail_their_sample_never_wrap():
    """Issue 10.1: 66036 cast to uint16 would be 500, a valid-looking token."""
    class Wrapping:
        codebook_size = 1000

        def encode(self, x):
            return torch.where(x[:, 0, 0, 0] > 0, 66036, 7).long().view(-1, 1, 1).expand(-1, 2, 2)

    x = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1).expand(2, 3, 4, 4)
    batch = {"items": [{"key": k, "error": None, "label": None, "meta": {}} for k in ("a", "b")],
             "groups": [([0, 1], x)]}
    rows, failures = encoders.encode_batch(Wrapping(), batch, torch.device("cpu"), token_dtype(1000),
                                           {"encode_s": 0.0, "encoded": 0})
    assert [r["key"] for r in rows] == ["b"] and rows[0]["tokens"].tolist() == [[7, 7], [7, 7]]
    assert failures == [{"key": "a", "reason": "a: token 66036 outside [0, 1000) (non-finite latents or weights?)"}]
    with pytest.raises(ValueError, match="do not fit uint16"):
        writer.build_table([{"key": "a", "tokens": np.array([66036]), "label": None}], np.dtype(np.uint16), "image")


def test_every_sample_failed_exits_1(shard_env, tmp_path, capsys):
    """Issue 10.4: a run that tokenized nothing is not a success."""
    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "imgs" / name).write_bytes(b"not a png")
    args = ["-t", shard_env["tok"], "--data", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"),
            "--num-workers", "0", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "every one of the 2 samples failed" in err and "a.png" in err
    assert read_manifest(tmp_path / "out")["totals"]["failed"] == 2  # what was found is kept


def test_overwrite_checks_before_deleting(shard_env, done, tmp_path, capsys):
    """Issue 10.7: --overwrite of an output that also holds notes.txt replaces it and keeps the notes."""
    out = tmp_path / "out"
    shutil.copytree(done, out)
    (out / "notes.txt").write_text("mine")
    args = args_for(shard_env, out)
    args[1] = shard_env["tok_other"]
    assert main(args + ["--overwrite"]) == 0
    assert read_manifest(out)["tokenizer"]["source"] == shard_env["tok_other"] and verify(out) == []
    assert (out / "notes.txt").read_text() == "mine"
    # a folder that is not an fsqtok output is refused with or without --overwrite, and nothing is deleted
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    (other / "data" / "x.parquet").write_bytes(b"someone else's")
    assert main(args_for(shard_env, other, "--overwrite")) == 1
    assert "not an fsqtok shards output" in capsys.readouterr().err
    assert (other / "data" / "x.parquet").read_bytes() == b"someone else's"


def test_non_utf8_file_name_fails_alone(shard_env, tmp_path):
    """Issue 10.12: one undecodable name is one failed sample naming the file; the run goes on."""
    imgs = tmp_path / "imgs"
    shutil.copytree(shard_env["imgs"], imgs)
    bad = os.path.join(os.fsencode(imgs / "cat"), b"caf\xe9.png")
    shutil.copyfile(imgs / "cat" / "001.png", bad)
    args = args_for(shard_env, tmp_path / "out")
    args[args.index("--data") + 1] = str(imgs)
    assert main(args) == 0
    m = read_manifest(tmp_path / "out")
    assert m["totals"]["rows"] == NUM_IMAGES and m["totals"]["failed"] == 1
    assert m["failures"][0]["key"] == "cat/caf\\xe9.png" and "not valid UTF-8" in m["failures"][0]["reason"]
    assert verify(tmp_path / "out") == []


def test_debug_and_device_in_every_position(shard_env, done, tmp_path, capsys):
    from fsqtok.cli import main as cli_main
    from fsqtok.cli_support import UsageError

    bad = ["-t", shard_env["tok"], "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]
    assert cli_main(["tokenize", *bad]) == 2
    for argv in (["--debug", "tokenize", *bad], ["tokenize", *bad, "--debug"], ["tokenize", "--debug", *bad]):
        with pytest.raises(UsageError):  # --debug shows the traceback instead of one line
            cli_main(argv)
    with pytest.raises(UsageError):
        cli_main(["--debug", "shards", "verify", str(tmp_path / "missing")])
    with pytest.raises(UsageError):
        cli_main(["shards", "verify", str(tmp_path / "missing"), "--debug"])
    for argv in (["--device", "cpu", "tokenize"], ["--device=cpu", "tokenize"], ["tokenize", "--device", "cpu"]):
        out = tmp_path / argv[0].replace("-", "")
        assert cli_main([*argv, *args_for(shard_env, out)]) == 0
        assert read_bytes(out) == read_bytes(done)
    assert cli_main(["tokenize", "--device", "bogus", *args_for(shard_env, tmp_path / "b")]) == 2
    assert cli_main(["--device", "cpu", "shards", "verify", str(done)]) == 0
