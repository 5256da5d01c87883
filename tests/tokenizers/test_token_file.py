"""fsqtok.tokenizers.token_file: the `fsqtok encode` file format round-trips and refuses what it did not write."""

import json

import pytest
import torch
from safetensors.torch import save_file

from fsqtok.tokenizers.token_file import META_KEY, check_same_tokenizer, read_tokens_file, write_tokens_file


def test_round_trip_keeps_every_item_and_the_record(tmp_path):
    tokens = [torch.arange(6).view(2, 3), torch.tensor([[7]])]
    meta = {"tokenizer": "t", "weights_sha256": "ab" * 32, "modality": "image", "items": [{"source": "a"}, {"source": "b"}]}
    write_tokens_file(tmp_path / "sub" / "t.safetensors", tokens, meta)
    got_meta, got = read_tokens_file(tmp_path / "sub" / "t.safetensors")
    assert got_meta == meta and len(got) == 2 and all(torch.equal(a, b) for a, b in zip(tokens, got))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["t.safetensors"]  # no temporary left


def test_other_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such tokens file"):
        read_tokens_file(tmp_path / "missing.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="no fsqtok metadata"):
        read_tokens_file(tmp_path / "plain.safetensors")
    save_file({"tokens.0": torch.zeros(1)}, str(tmp_path / "short.safetensors"),
              metadata={META_KEY: json.dumps({"items": [{}, {}]})})
    with pytest.raises(ValueError, match="not a valid fsqtok tokens file"):
        read_tokens_file(tmp_path / "short.safetensors")
    with pytest.raises(ValueError, match="1 token tensors for 2 items"):
        write_tokens_file(tmp_path / "w.safetensors", [torch.zeros(1)], {"items": [{}, {}]})


def test_tokens_of_other_weights_are_refused():
    class Tok:
        def weights_hash(self):
            return "cd" * 32

    check_same_tokenizer(Tok(), {"weights_sha256": "cd" * 32}, "t.safetensors", "mine")
    with pytest.raises(ValueError, match=r"t.safetensors: tokens come from tokenizer theirs \(weights abab.*not mine"):
        check_same_tokenizer(Tok(), {"weights_sha256": "ab" * 32, "tokenizer": "theirs"}, "t.safetensors", "mine")
