"""translate.run and score with tiny random models: structure, batching, language groups,
forced BOS, long-input splitting, Marian pairs, skips and failures. Outputs are noise;
nothing here asserts translation quality."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskloop.data.records import Check, Prediction, TranslateExample, Where, status_from_checks
from taskloop.models.generate import count_tokens, forced_bos_id
from taskloop.models.loader import LoadedModel
from taskloop.models.tiny import build_marian_tokenizer, build_tiny_model
from taskloop.tasks import translate
from taskloop.tasks.chunking import split_to_fit
from taskloop.tasks.context import FileOptions, Resources, TaskContext
from taskloop.tasks.translate import (
    language_pair_check,
    marian_pair,
    model_family,
    model_lang_code,
)

FILE = "data/translate.jsonl"
CHECKS = [
    "tokenizer_coverage",
    "glossary_terms",
    "untranslated_copy",
    "numbers_preserved",
    "names_preserved",
    "length_ratio",
    "alignment_coverage",
]
SENTENCES = [
    "The model runs on a single GPU.",
    "A dog is running across the green meadow.",
    "The council voted seven to two to build twelve kilometres of cycling lanes.",
    "Children play in the park.",
    "The model answers questions about short documents.",
]


def _never_stop(folder: Path, *token_ids: int) -> None:
    """Suppress end-of-sequence too, so the random model always writes max_new_tokens
    tokens."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    config["suppress_tokens"] = sorted({*config.get("suppress_tokens", []), *token_ids})
    path.write_text(json.dumps(config))


def _mute_tokens(folder: Path, tokens: list[str]) -> None:
    """Zero the output rows of the language tokens: a logit of exactly 0 never beats the
    best of ~100 random logits, so the model writes them only when forced (they cannot be
    suppressed: forcing a suppressed token leaves no finite logit), and no output is made
    of language tokens alone (which decode to "")."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    ids = AutoTokenizer.from_pretrained(folder).convert_tokens_to_ids(tokens)
    with torch.no_grad():
        model.get_output_embeddings().weight[ids] = 0.0
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def m2m_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny T5 with M2M-100-style language tokens __en__ and __de__ (window 64)."""
    folder = build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "m2m", "seq2seq", lang_tokens=["__en__", "__de__"]
    )
    _mute_tokens(folder, ["__en__", "__de__"])
    _never_stop(folder, 1)  # </s> is id 1 in the tiny vocabulary
    return folder


@pytest.fixture(scope="module")
def marian_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MarianMT model with a SentencePiece vocabulary and >>de<</>>fr<< target
    tokens, saved in a folder named like the hub's en→fr model."""
    pytest.importorskip("sentencepiece")
    from transformers import MarianConfig, MarianMTModel

    work = tmp_path_factory.mktemp("marian")
    tok = build_marian_tokenizer(work, extra_tokens=[">>de<<", ">>fr<<"])
    vocab = tok.get_vocab()
    config = MarianConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, forced_eos_token_id=None,
    )  # fmt: skip
    folder = work / "opus-mt-en-fr"
    MarianMTModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    _never_stop(folder, 0, 1, 2)
    return folder


def ex(i: int, source: str, **fields: Any) -> TranslateExample:
    return TranslateExample(id=f"tr-{i}", where=Where(file=FILE, row=i), source=source, **fields)


def context(model: Path | str | None, **options: Any) -> TaskContext:
    opts = {"max_new_tokens": 6, **options}
    return TaskContext(
        file=FILE,
        options=FileOptions(model=str(model) if model else None, **opts),
        resources=Resources(),
    )


def loaded(ctx: TaskContext) -> LoadedModel:
    assert ctx.options.model
    return ctx.resources.model(ctx.options.model, kind="seq2seq")  # the one run() uses


Spy = Callable[[LoadedModel], list[dict[str, Any]]]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Record the keyword arguments of every ``model.generate`` call (the seam for batch
    sizes and the forced BOS id)."""

    def attach(lm: LoadedModel) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        original = lm.model.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(lm.model, "generate", generate)
        return calls

    return attach


# --- no model --------------------------------------------------------------------------


def test_no_model_skips_every_item_with_what_to_pass() -> None:
    examples = [ex(i, s, target="x") for i, s in enumerate(SENTENCES[:3])]
    preds = translate.run(examples, context(None))
    assert [p.id for p in preds] == ["tr-0", "tr-1", "tr-2"]
    for p in preds:
        assert p.status == "skipped" and p.output is None and p.checks == [] and p.mode == ""
        assert "no translation model is configured" in p.reason
        assert "--model translate=Helsinki-NLP/opus-mt-en-de" in p.reason
        assert "facebook/m2m100_418M" in p.reason and "save_pretrained" in p.reason
    assert translate.score(examples, preds) == {}


def test_model_not_found_is_skipped_with_the_hint() -> None:
    preds = translate.run([ex(0, "Hello.")], context("no-such-org/no-such-model"))
    assert preds[0].status == "skipped" and preds[0].output is None
    assert "not in the Hugging Face cache" in preds[0].reason
    assert "save_pretrained" in preds[0].reason  # the loader's hint


# --- generation ------------------------------------------------------------------------


def test_one_prediction_per_example_in_order_batched(m2m_model: Path, spy: Spy) -> None:
    ctx = context(m2m_model, batch_size=2, target_lang="de", source_lang="en")
    calls = spy(loaded(ctx))
    examples = [ex(i, s) for i, s in enumerate(SENTENCES)]
    preds = translate.run(examples, ctx)
    assert [p.id for p in preds] == [e.id for e in examples]
    assert [c["input_ids"].shape[0] for c in calls] == [2, 2, 1]
    for p in preds:
        assert p.status in ("ok", "flagged") and p.output
        assert [c.name for c in p.checks] == CHECKS
        assert p.status == status_from_checks(p.checks)
        assert p.mode == "generative" and p.model and "m2m" in p.model
        assert p.details["chunks"] == 1 and p.details["cached"] is False
        # The random model never stops, so every output is cut at max_new_tokens: said so.
        assert any("reached max_new_tokens=6" in t for t in p.truncation)


def test_language_groups_and_forced_bos(m2m_model: Path, spy: Spy) -> None:
    """The file says en→de; one example asks for en and wins. Two language groups, two
    generate calls, each forcing its own language token as the first decoder token."""
    ctx = context(m2m_model, source_lang="en", target_lang="de")
    lm = loaded(ctx)
    calls = spy(lm)
    tok = lm.tokenizer
    de_id, en_id = tok.convert_tokens_to_ids("__de__"), tok.convert_tokens_to_ids("__en__")
    examples = [ex(0, SENTENCES[0]), ex(1, SENTENCES[1], target_lang="en"), ex(2, SENTENCES[3])]
    preds = translate.run(examples, ctx)
    forced = {c["forced_bos_token_id"]: c["input_ids"].shape[0] for c in calls}
    assert forced == {de_id: 2, en_id: 1}
    assert [p.details["target_lang"] for p in preds] == ["de", "en", "de"]
    assert [p.details["model_target_lang"] for p in preds] == ["de", "en", "de"]
    assert all("__de__" not in (p.output or "") for p in preds)  # special tokens dropped


def test_forced_bos_token_is_the_first_generated_token(m2m_model: Path) -> None:
    """Directly: with forced_bos_token_id the decoder's first token after the start token
    (position 1; position 0 is decoder_start_token_id) is __de__."""
    import torch

    lm = loaded(context(m2m_model))
    code = model_lang_code(model_family(lm), "de", set(lm.tokenizer.get_vocab()))
    de_id = forced_bos_id(lm, code)
    assert (code, de_id) == ("de", lm.tokenizer.convert_tokens_to_ids("__de__"))
    enc = lm.tokenizer(["The model runs ."], return_tensors="pt")
    with torch.inference_mode():
        out = lm.model.generate(**enc, forced_bos_token_id=de_id, max_new_tokens=3)
    assert out[0, 0].item() == lm.model.config.decoder_start_token_id
    assert out[0, 1].item() == de_id


def test_multilingual_model_needs_known_target_language(m2m_model: Path) -> None:
    ctx = context(m2m_model)  # no target_lang in the file
    preds = translate.run([ex(0, SENTENCES[0]), ex(1, SENTENCES[1], target_lang="fr")], ctx)
    assert preds[0].status == "skipped" and "needs the target language" in preds[0].reason
    assert preds[1].status == "skipped" and "no language token 'fr'" in preds[1].reason
    mixed = translate.run(
        [ex(0, SENTENCES[0], target_lang="de"), ex(1, "x", target_lang="fr")], ctx
    )
    assert mixed[0].status in ("ok", "flagged") and mixed[1].status == "skipped"


def test_long_input_is_split_translated_in_order_and_joined(m2m_model: Path, spy: Spy) -> None:
    """A 15-sentence source of well over 64 tokens: split at sentences with no overlap;
    each chunk is translated once and the outputs are joined in order (the chunk outputs
    come back from the cache when the chunks are translated as items of their own)."""
    ctx = context(m2m_model, target_lang="de")
    lm = loaded(ctx)
    source = " ".join(SENTENCES * 3)
    split = split_to_fit(source, lm.window, lambda xs: count_tokens(lm, xs), overlap=0)
    assert split.was_split
    calls = spy(lm)
    (pred,) = translate.run([ex(0, source)], ctx)
    assert pred.details["chunks"] == len(split.chunks) >= 2
    assert sum(c["input_ids"].shape[0] for c in calls) == len(split.chunks)
    assert "exceeds the budget of 64" in pred.truncation[0]
    assert "0 sentence(s) of overlap" in pred.truncation[0]
    parts = translate.run([ex(i, c.text) for i, c in enumerate(split.chunks)], ctx)
    assert all(p.details["cached"] for p in parts)
    assert pred.output == " ".join(p.output or "" for p in parts)


def test_max_input_tokens_and_truncate_mode(m2m_model: Path) -> None:
    """Sentence sizes in tokens (words and punctuation, plus </s>): 9, 10, 15, 7, 9.
    Packed into chunks of at most 16: [9], [10], [15], [7 + 9] → 4 chunks."""
    source = " ".join(SENTENCES)
    ctx = context(m2m_model, target_lang="de", max_input_tokens=16)
    assert count_tokens(loaded(ctx), SENTENCES) == [9, 10, 15, 7, 9]
    (small,) = translate.run([ex(0, source)], ctx)
    assert small.details["chunks"] == 4 and "budget of 16" in small.truncation[0]
    ctx = context(m2m_model, target_lang="de", long_input="truncate")
    (cut,) = translate.run([ex(0, " ".join(SENTENCES * 3))], ctx)
    assert cut.details["chunks"] == 1
    assert sum("cut to the model window of 64" in t for t in cut.truncation) == 1


def test_repeated_run_is_served_from_the_cache(m2m_model: Path, spy: Spy) -> None:
    ctx = context(m2m_model, target_lang="de")
    first = translate.run([ex(0, SENTENCES[0])], ctx)
    calls = spy(loaded(ctx))
    second = translate.run([ex(0, SENTENCES[0])], ctx)
    assert calls == [] and second[0].details["cached"] is True
    assert second[0].output == first[0].output


def test_checks_use_glossary_dictionary_and_reference(m2m_model: Path) -> None:
    ctx = context(m2m_model, target_lang="de", source_lang="en")
    ctx.glossary = {"model": "Modell"}
    ctx.dictionary = {"model": {"Modell"}, "runs": {"läuft"}, "single": {"einzigen"}}
    target = "Das Modell läuft auf einer einzigen GPU."
    (p,) = translate.run([ex(0, SENTENCES[0], target=target)], ctx)
    by_name = {c.name: c for c in p.checks}
    assert "'model' → 'Modell'" in by_name["glossary_terms"].detail
    assert by_name["alignment_coverage"].detail.startswith("coverage ")
    assert 0 <= p.scores["alignment_coverage"] <= 1 and 0 <= p.scores["chrf++"] <= 100


def test_unreadable_script_is_a_warning_not_a_flag(m2m_model: Path) -> None:
    (p,) = translate.run([ex(0, "Привет мир")], context(m2m_model, target_lang="de"))
    check = next(c for c in p.checks if c.name == "tokenizer_coverage")
    assert not check.passed and check.severity == "warning"
    assert "CYRILLIC" in check.detail
    assert check not in p.failed_checks()


def test_a_failing_group_fails_only_its_items(
    m2m_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(m2m_model, target_lang="de")
    lm = loaded(ctx)
    en_id = lm.tokenizer.convert_tokens_to_ids("__en__")
    original = lm.model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("forced_bos_token_id") == en_id:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(lm.model, "generate", generate)
    preds = translate.run([ex(0, SENTENCES[0]), ex(1, SENTENCES[3], target_lang="en")], ctx)
    assert preds[0].status in ("ok", "flagged")
    assert preds[1].status == "failed" and preds[1].output is None
    assert "generation failed for None→en: RuntimeError: CUDA out of memory" in preds[1].reason


# --- Marian ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")
def test_marian_pair_mismatch_warns_and_target_prefix(marian_model: Path, spy: Spy) -> None:
    """The folder says en→fr; an en→de example gets a warning (not a flag), the model's
    >>de<< target token as the first input token, and no forced BOS."""
    ctx = context(marian_model, source_lang="en", num_beams=1)
    lm = loaded(ctx)
    assert model_family(lm) == "marian"
    calls = spy(lm)
    de, fr = translate.run(
        [ex(0, SENTENCES[0], target_lang="de"), ex(1, SENTENCES[3], target_lang="fr")], ctx
    )
    pair_de, pair_fr = de.checks[0], fr.checks[0]
    assert pair_de.name == "model_language_pair" and not pair_de.passed
    assert (
        pair_de.severity == "warning"
        and "target 'de' but the model translates fr" in pair_de.detail
    )
    assert pair_fr.passed
    first_tokens = sorted(c["input_ids"][0, 0].item() for c in calls)
    tok = lm.tokenizer
    assert first_tokens == sorted(tok.convert_tokens_to_ids([">>de<<", ">>fr<<"]))
    assert all("forced_bos_token_id" not in c for c in calls)
    # With no languages in the data, the model name's pair fills them in.
    (plain,) = translate.run([ex(2, SENTENCES[1])], context(marian_model, num_beams=1))
    assert (plain.details["source_lang"], plain.details["target_lang"]) == ("en", "fr")
    assert plain.checks[0].name == "model_language_pair" and plain.checks[0].passed


# --- codes and pairs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, lang, code",
    [
        ("m2m100", "de", "de"), ("m2m100", "de-DE", "de"), ("mbart", "de", "de_DE"),
        ("mbart", "EN", "en_XX"), ("mbart", "de_DE", "de_DE"), ("nllb", "de", "deu_Latn"),
        ("nllb", "zh", "zho_Hans"), ("nllb", "deu_Latn", "deu_Latn"),
    ],
)  # fmt: skip
def test_model_lang_code(family: str, lang: str, code: str) -> None:
    assert model_lang_code(family, lang) == code


def test_unknown_code_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. deu_Latn"):
        model_lang_code("nllb", "xx")
    assert model_lang_code("nllb", "xx_Special", {"xx_Special"}) == "xx_Special"  # model's own
    # A bare "de" that happens to be a subword of the vocabulary is still mapped.
    assert model_lang_code("nllb", "de", {"de", "deu_Latn"}) == "deu_Latn"
    assert model_lang_code("m2m100", "de", {"__de__"}) == "de"


def test_marian_names_and_pair_check() -> None:
    assert marian_pair("Helsinki-NLP/opus-mt-en-de") == ("en", "de")
    assert marian_pair("/models/opus-mt-tc-big-en-de/") == ("en", "de")
    assert marian_pair("Helsinki-NLP/opus-mt-en-ROMANCE") == ("en", "ROMANCE")
    assert marian_pair("facebook/m2m100_418M") is None
    assert language_pair_check("facebook/m2m100_418M", "en", "de") is None
    bad = language_pair_check("Helsinki-NLP/opus-mt-en-de", "de", "en")
    assert bad is not None and not bad.passed and bad.detail.count("but the model") == 2
    assert language_pair_check("Helsinki-NLP/opus-mt-en-de", None, "de").passed  # type: ignore[union-attr]
    assert language_pair_check("Helsinki-NLP/opus-mt-en-ROMANCE", "en", "de").passed  # type: ignore[union-attr]


# --- score -----------------------------------------------------------------------------


def _pred(i: int, output: str | None, checks: list[Check]) -> Prediction:
    return Prediction(
        id=f"tr-{i}", task="translate", where=Where(file=FILE, row=i), output=output,
        status="skipped" if output is None else status_from_checks(checks), checks=checks,
    )  # fmt: skip


def test_score_hand_computed() -> None:
    """Two translations equal to their references: BLEU and chrF++ are 100. Check shares
    over the three items with an output: a passes 3/3, b passes 1/3 (the skipped item and
    its missing output count for nothing)."""
    a_ok, a_no = Check(name="a", passed=True), Check(name="a", passed=False)
    b_ok, b_no = Check(name="b", passed=True), Check(name="b", passed=False)
    refs = ["Ein Hund rennt über die grüne Wiese.", "Das Modell läuft auf einer einzigen GPU."]
    examples = [
        ex(0, "s", target=refs[0]),
        ex(1, "s", target=refs[1]),
        ex(2, "s"),
        ex(3, "s", target="t"),
    ]
    preds = [
        _pred(0, refs[0], [a_ok, b_ok]),
        _pred(1, refs[1], [a_ok, b_no]),
        _pred(2, "no reference", [a_ok, b_no]),
        _pred(3, None, [a_no]),
    ]
    got = translate.score(examples, preds)
    assert got["bleu"] == pytest.approx(100) and got["chrf++"] == pytest.approx(100)
    assert got["references"] == 2
    assert got["check.a"] == 1.0 and math.isclose(got["check.b"], 1 / 3)
