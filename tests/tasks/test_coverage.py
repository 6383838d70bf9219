"""Tokenizer coverage: unknown-token rates and uncovered scripts, by hand on tiny tokenizers
of the three kinds (fast word-level with an unknown token, slow SentencePiece, and a BPE
with no unknown token that drops what it cannot read)."""

from __future__ import annotations

from typing import Any

import pytest

from taskloop.data.records import TranslateExample, Where
from taskloop.models.tiny import BUILTIN_CORPUS, build_marian_tokenizer, build_tokenizer
from taskloop.tasks.coverage import (
    coverage_check,
    coverage_per_text,
    coverage_report,
    coverage_warnings,
    script_of,
)


@pytest.fixture(scope="module")
def word_tok() -> Any:
    return build_tokenizer(BUILTIN_CORPUS)


@pytest.fixture(scope="module")
def spm_tok(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A slow MarianTokenizer over a SentencePiece model trained on the Latin-script corpus
    (character coverage 1.0 of that corpus, so Cyrillic and CJK are unknown)."""
    pytest.importorskip("sentencepiece")
    return build_marian_tokenizer(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def lossy_bpe() -> Any:
    """A BPE without an unknown token: characters outside its alphabet vanish on encode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece()
    core.train_from_iterator(
        BUILTIN_CORPUS, trainers.BpeTrainer(vocab_size=120, special_tokens=["<pad>"])
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>")  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    "ch, script",
    [
        ("a", "LATIN"), ("ß", "LATIN"), ("Ａ", "LATIN"), ("ж", "CYRILLIC"), ("λ", "GREEK"),
        ("中", "CJK"), ("あ", "HIRAGANA"), ("ア", "KATAKANA"), ("한", "HANGUL"), ("ก", "THAI"),
        ("א", "HEBREW"), ("ب", "ARABIC"), ("क", "DEVANAGARI"), ("1", None), ("!", None),
        (" ", None), ("€", None),
    ],
)  # fmt: skip
def test_script_of(ch: str, script: str | None) -> None:
    assert script_of(ch) == script


def test_word_level_unknown_rate_and_scripts(word_tok: Any) -> None:
    """ "The model Привет мир 你好" is 5 word tokens; Привет, мир and 你好 are not in the
    vocabulary: unk rate 3/5 = 0.6. Latin is read ("The", "model"); every Cyrillic and CJK
    character sits in an unknown token, so both scripts are uncovered."""
    r = coverage_report(["The model Привет мир 你好"], word_tok, "xx")
    assert (r.units, r.unknown, r.unk_rate) == (5, 3, 0.6)
    assert r.uncovered_scripts == ["CJK", "CYRILLIC"]
    assert r.samples == ["Привет", "мир", "你好"]
    assert r.method == "unk" and r.lang == "xx"


def test_an_unknown_latin_word_does_not_uncover_latin(word_tok: Any) -> None:
    """ "The zebra dog ." → 4 tokens, zebra unknown: 1/4; Latin is still read elsewhere."""
    r = coverage_report(["The zebra dog ."], word_tok)
    assert r.unk_rate == 0.25 and r.uncovered_scripts == [] and r.samples == ["zebra"]
    assert r.has_problem() and not r.has_problem(max_unk_rate=0.3)


def test_per_text_reports_and_check(word_tok: Any) -> None:
    reports = coverage_per_text(["The model runs .", "Привет мир"], word_tok, "ru")
    assert [r.unk_rate for r in reports] == [0.0, 1.0]
    ok, bad = (coverage_check(r) for r in reports)
    assert ok.passed and ok.severity == "warning" and ok.detail == "0 of 4 unknown"
    assert not bad.passed and bad.severity == "warning"
    assert (
        bad.detail == "100% unknown (2 of 2); scripts not covered: CYRILLIC; e.g. 'Привет', 'мир'"
    )


def test_slow_sentencepiece_tokenizer(spm_tok: Any) -> None:
    """No offsets on a slow tokenizer: each distinct letter is encoded alone. Cyrillic
    letters come back as <unk>; Latin letters are pieces of the vocabulary."""
    text = "The model runs Привет"
    r = coverage_report([text], spm_tok, "en")
    ids = spm_tok(text, add_special_tokens=False)["input_ids"]
    assert r.units == len(ids) and r.unknown == ids.count(spm_tok.unk_token_id) >= 1
    assert r.unk_rate == pytest.approx(r.unknown / r.units)
    assert r.uncovered_scripts == ["CYRILLIC"] and r.samples == ["Привет"]
    clean = coverage_report(["The dog runs in the park."], spm_tok, "en")
    assert clean.unknown == 0 and not clean.has_problem()


def test_round_trip_without_unknown_token(lossy_bpe: Any) -> None:
    """No unknown token: count characters lost in encode/decode. "The model Привет" has
    14 non-space characters; the 6 Cyrillic ones vanish: 6/14."""
    r = coverage_report(["The model Привет"], lossy_bpe, "ru")
    assert r.method == "roundtrip" and (r.units, r.unknown) == (14, 6)
    assert r.unk_rate == pytest.approx(6 / 14)
    assert r.uncovered_scripts == ["CYRILLIC"]


def test_coverage_warnings_per_language(word_tok: Any) -> None:
    where = Where(file="data/translate.jsonl", row=1)
    examples = [
        TranslateExample(id="1", where=where, source="The model runs .", source_lang="en"),
        TranslateExample(id="2", where=where, source="Привет мир", source_lang="ru"),
        TranslateExample(id="3", where=where, source="A dog .", source_lang=None),
    ]
    warnings = coverage_warnings(examples, word_tok, default_lang="en")
    assert len(warnings) == 1
    assert warnings[0].startswith("source language ru: 100.0% of 2 tokens are unknown")
    assert "CYRILLIC" in warnings[0] and "'Привет'" in warnings[0]


def test_model_or_tokenizer_accepted(word_tok: Any) -> None:
    class FakeModel:  # LoadedModel's shape: .tokenizer and .name
        tokenizer = word_tok
        name = "tiny"

    r1 = coverage_report(["Привет"], FakeModel())
    r2 = coverage_report(["Привет"], word_tok)
    assert r1 == r2
    ex = TranslateExample(id="1", where=Where(file="f", row=1), source="Привет")
    assert "tokenizer of tiny" in coverage_warnings([ex], FakeModel())[0]
