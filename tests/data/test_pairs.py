"""Training pairs: the exact model input and label text each task example gives."""

from __future__ import annotations

from typing import Any

import pytest

from taskloop.data.pairs import NO_ANSWER, Pair, by_task, example_to_pairs, to_pairs
from taskloop.data.records import (
    CodegenExample,
    QAExample,
    SummarizeExample,
    TranslateExample,
    Where,
)


def at(row: int = 1, file: str = "data/x.jsonl") -> Where:
    return Where(file=file, row=row)


def translate(**kw: Any) -> TranslateExample:
    values: dict[str, Any] = {
        "id": "t1", "where": at(3, "data/translate.jsonl"), "source": "Hello world",
        "target": "Hallo Welt", "source_lang": "en", "target_lang": "de",
    }  # fmt: skip
    return TranslateExample(**{**values, **kw})


def qa(**kw: Any) -> QAExample:
    values: dict[str, Any] = {
        "id": "q1", "where": at(2, "data/qa.jsonl"), "question": "Who won?",
        "context": "Ann won the race.", "answers": ["Ann"],
    }  # fmt: skip
    return QAExample(**{**values, **kw})


def test_translate_t5_gets_the_language_prefix_others_none() -> None:
    (t5,) = example_to_pairs(translate(), model_type="t5")
    assert t5.source == "translate English to German: Hello world"
    assert t5.target == "Hallo Welt"
    assert (t5.task, t5.id, t5.where, t5.origin) == (
        "translate", "t1", "data/translate.jsonl:3", "data",
    )  # fmt: skip
    (marian,) = example_to_pairs(translate(), model_type="marian")
    assert marian.source == "Hello world"
    (mt5,) = example_to_pairs(translate(source_lang="en_XX", target_lang="fr-FR"), model_type="mt5")
    assert mt5.source == "translate English to French: Hello world"


def test_translate_t5_without_a_known_language_pair_gets_no_prefix() -> None:
    (p,) = example_to_pairs(translate(source_lang="ja", target_lang="de"), model_type="t5")
    assert p.source == "Hello world"
    (p,) = example_to_pairs(translate(source_lang=None, target_lang=None), model_type="t5")
    assert p.source == "Hello world"


def test_translate_without_target_gives_no_pair() -> None:
    assert example_to_pairs(translate(target=None)) == []
    assert example_to_pairs(translate(target="")) == []


def test_summaries_give_one_pair_per_reference_with_t5_prefix() -> None:
    ex = SummarizeExample(
        id="s1", where=at(), document="A long document.", summaries=["Short.", "Brief."]
    )
    pairs = example_to_pairs(ex, model_type="t5")
    assert [(p.source, p.target) for p in pairs] == [
        ("summarize: A long document.", "Short."),
        ("summarize: A long document.", "Brief."),
    ]
    assert {p.id for p in pairs} == {"s1"}
    assert [p.source for p in example_to_pairs(ex, model_type="bart")] == ["A long document."] * 2
    no_label = SummarizeExample(id="s2", where=at(), document="Doc.", summaries=[])
    assert example_to_pairs(no_label, model_type="t5") == []


def test_qa_prompt_seq2seq_and_causal() -> None:
    (s2s,) = example_to_pairs(qa(), kind="seq2seq", model_type="t5")
    assert s2s.source == "question: Who won? context: Ann won the race."
    assert s2s.target == "Ann"
    (causal,) = example_to_pairs(qa(), kind="causal", model_type="gpt2")
    assert causal.source == "question: Who won? context: Ann won the race. answer:"
    assert causal.source.endswith("answer:")


def test_qa_first_answer_is_the_label_and_unanswerable_is_spelled_out() -> None:
    (p,) = example_to_pairs(qa(answers=["Ann", "Ann Lee"]))
    assert p.target == "Ann"
    (p,) = example_to_pairs(qa(answers=[], is_impossible=True))
    assert p.target == NO_ANSWER == "unanswerable"
    assert example_to_pairs(qa(answers=[], is_impossible=None)) == []
    assert example_to_pairs(qa(answers=[], is_impossible=False)) == []


def test_codegen_prompt_and_completion_no_prefix_even_for_t5() -> None:
    ex = CodegenExample(id="c1", where=at(), prompt="def f():\n", completion="    return 1\n")
    (p,) = example_to_pairs(ex, model_type="t5")
    assert (p.source, p.target) == ("def f():\n", "    return 1\n")
    assert example_to_pairs(CodegenExample(id="c2", where=at(), prompt="def g():\n")) == []


def test_to_pairs_and_by_task_keep_order() -> None:
    examples = [
        translate(id="a"),
        qa(id="b"),
        translate(id="c", target=None),
        translate(id="d"),
    ]
    pairs = to_pairs(examples, kind="seq2seq", model_type="")
    assert [p.id for p in pairs] == ["a", "b", "d"]
    grouped = by_task(pairs)
    assert list(grouped) == ["translate", "qa"]
    assert [p.id for p in grouped["translate"]] == ["a", "d"]


def test_pair_is_frozen() -> None:
    p = Pair("qa", "s", "t", "1", "f:1")
    with pytest.raises(AttributeError):
        p.source = "x"  # type: ignore[misc]


def test_model_input_is_the_pair_source_with_or_without_a_label():
    """What explain and evaluation show a model is what training feeds it: the same
    prompt for an unlabelled row as for a labelled one."""
    from taskloop.data.pairs import example_to_pairs, model_input
    from taskloop.data.records import QAExample, SummarizeExample, Where

    where = Where(file="f", row=1)
    qa = QAExample(id="q", where=where, question="Who?", context="Ann sat.", answers=["Ann"])
    unlabelled = qa.model_copy(update={"answers": []})
    assert example_to_pairs(unlabelled) == []
    for kind in ("seq2seq", "causal"):
        assert model_input(unlabelled, kind=kind) == example_to_pairs(qa, kind=kind)[0].source
    doc = SummarizeExample(id="s", where=where, document="A long text.")
    assert model_input(doc, model_type="t5") == "summarize: A long text."
