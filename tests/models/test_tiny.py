"""Tiny test models: a word-level tokenizer and 1–2 layer random models saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskloop.models.loader import content_version
from taskloop.models.tiny import SPECIAL_TOKENS, build_tiny_model, build_tokenizer


def test_tokenizer_vocabulary_order() -> None:
    """Ids: the 4 specials (0–3), then extra tokens, then words in first-seen order:
    <pad>=0 </s>=1 <unk>=2 <s>=3 __de__=4 Hello=5 world=6 !=7."""
    tok = build_tokenizer(["Hello world!", "world Hello"], extra_tokens=["__de__"])
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.bos_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids("__de__") == 4
    assert len(tok) == 8
    assert tok("Hello world!")["input_ids"] == [5, 6, 7, 1]  # </s> appended
    assert tok("Hello moon")["input_ids"] == [5, 2, 1]  # unknown word → <unk>
    assert tok("__de__ world")["input_ids"] == [4, 6, 1]  # the language token is one token


def test_tokenizer_without_eos_and_decoding() -> None:
    tok = build_tokenizer(["Hello world"], append_eos=False, max_length=7)
    assert tok("Hello world")["input_ids"] == [4, 5]
    assert tok.decode([4, 5]) == "Hello world"  # words joined with spaces
    assert tok.model_max_length == 7


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "seq2seq": build_tiny_model(root / "s", "seq2seq", layers=2, width=16, max_length=20),
        "causal": build_tiny_model(root / "c", "causal", width=16, max_length=24),
        "seq2seq-again": build_tiny_model(
            root / "s2", "seq2seq", layers=2, width=16, max_length=20
        ),
    }


def test_seq2seq_files_and_config(built: dict[str, Path]) -> None:
    folder = built["seq2seq"]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "t5"
    assert (config["d_model"], config["num_layers"], config["num_decoder_layers"]) == (16, 2, 2)
    assert config["decoder_start_token_id"] == 0  # <pad>, as T5 does
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 8
    assert generation["suppress_tokens"] == [0, 2, 3]  # <pad>, <unk>, <s>


def test_causal_config(built: dict[str, Path]) -> None:
    config = json.loads((built["causal"] / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert (config["n_embd"], config["n_layer"], config["n_positions"]) == (16, 1, 24)


def test_same_seed_same_weights(built: dict[str, Path], tmp_path: Path) -> None:
    """The version hashes the weights: equal for equal seeds, different otherwise."""
    assert content_version(built["seq2seq"]) == content_version(built["seq2seq-again"])
    other = build_tiny_model(tmp_path / "s", "seq2seq", layers=2, width=16, max_length=20, seed=1)
    assert content_version(other) != content_version(built["seq2seq"])


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be"):
        build_tiny_model(tmp_path, "encoder")  # type: ignore[arg-type]
