"""Question answering: the offline extractive default with the real MiniLM encoder, the HF
QA-head path with a tiny BERT, the generative path with a tiny T5, scoring, and the SQuAD v2
sample."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taskloop.data.records import Prediction, QAExample, Where, status_from_checks
from taskloop.evaluate.metrics import exact_match
from taskloop.models.encoder import MINILM_NAME, Encoder, load_encoder
from taskloop.models.generate import Generated, GenerationSettings, count_tokens
from taskloop.models.loader import LoadedModel, load_model
from taskloop.models.tiny import build_tiny_model
from taskloop.tasks import qa
from taskloop.tasks.context import FileOptions, Resources, TaskContext
from taskloop.tasks.text import split_sentences

VIENNA = (
    "Vienna lies on the Danube, the second-longest river in Europe. "
    "The city grew around a Roman camp called Vindobona."
)
BRIDGE = (
    "The Harbour Bridge was opened in 1932 after eight years of work. "
    "It is 1,149 metres long and carries 8 lanes of traffic. Its arch is painted grey."
)
FILLER = [
    "The weather in the valley is mild for most of the year.",
    "Farmers grow apples and pears on the southern slopes.",
    "A small museum shows tools from the old mines.",
    "Buses leave the square every twenty minutes.",
    "The school has a choir that sings at the summer fair.",
    "Fishing is allowed in the lake from May to October.",
    "The library opens late on Thursdays.",
    "Hikers often stop at the hut below the pass.",
]
LONG_CONTEXT = " ".join([*FILLER[:4], "Vienna lies on the Danube.", *FILLER[4:]])


def example(
    question: str,
    context: str,
    answers: Sequence[str] = (),
    *,
    is_impossible: bool | None = None,
    id: str | None = None,
    row: int = 1,
) -> QAExample:
    return QAExample(
        id=id or f"q{row}",
        where=Where(file="qa.jsonl", row=row),
        question=question,
        context=context,
        answers=list(answers),
        is_impossible=is_impossible,
    )


def context_for(**options: Any) -> TaskContext:
    return TaskContext(
        file="qa.jsonl",
        options=FileOptions(task="qa", **options),
        resources=Resources(device="cpu"),
    )


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return load_encoder(device="cpu")  # ~3 s, once per session


# ------------------------------------------------------------ offline extractive default


@pytest.mark.parametrize(
    ("question", "context", "golds"),
    [
        ("Which river does Vienna lie on?", VIENNA, ["Danube", "the Danube"]),
        ("What was the Roman camp called?", VIENNA, ["Vindobona"]),
        ("How many lanes of traffic does the bridge carry?", BRIDGE, ["8"]),
        ("When was the bridge opened?", BRIDGE, ["1932"]),
    ],
)
def test_extractive_default_finds_clear_answers(
    encoder: Encoder, question: str, context: str, golds: list[str]
) -> None:
    """Hand-made contexts with one obvious span: the wh-word picks it (a river name, a
    name, a number for "how many", a year for "when"), exactly and at its offsets."""
    (pred,) = qa.run([example(question, context, golds)], context_for())
    assert pred.output is not None and exact_match(pred.output, golds) == 1.0, pred.output
    assert pred.status == "ok" and pred.mode == "extractive" and pred.model == MINILM_NAME
    start, end = pred.details["start"], pred.details["end"]
    assert context[start:end] == pred.output
    assert pred.output in pred.details["evidence"]
    assert pred.details["evidence"] in [s.text for s in split_sentences(context)]
    assert pred.details["no_answer"] is False and 0.5 < pred.details["confidence"] <= 1.0
    assert {c.name: c.passed for c in pred.checks} == {
        "non_empty": True,
        "span_of_context": True,
        "answer_length": True,
    }
    assert pred.scores == {"exact": 1.0, "f1": 1.0}


def test_extractive_default_says_no_answer_to_an_off_topic_question(encoder: Encoder) -> None:
    """Nothing in a text about Vienna is close to mercury's boiling point: the best
    sentence's cosine (~0.16) is under the default threshold (0.40), so the answer is ""."""
    ex = example("What is the boiling point of mercury?", VIENNA, is_impossible=True)
    (pred,) = qa.run([ex], context_for())
    assert pred.output == "" and pred.status == "ok"
    assert pred.details["no_answer"] is True
    assert pred.details["similarity"] < qa.NO_ANSWER_THRESHOLD
    assert pred.details["confidence"] > 0.9  # far below the threshold: a confident "no"
    assert pred.details["start"] is None and pred.details["end"] is None
    (check,) = pred.checks
    assert check.name == "non_empty" and check.passed and "threshold" in check.detail
    assert pred.scores == {"exact": 1.0, "f1": 1.0}


def test_no_answer_threshold_option_is_obeyed(encoder: Encoder) -> None:
    """-1 answers whatever is asked; 1.0 (no cosine reaches it) never answers."""
    off_topic = example("What is the boiling point of mercury?", VIENNA)
    on_topic = example("Which river does Vienna lie on?", VIENNA, row=2)
    always = qa.run([off_topic, on_topic], context_for(no_answer_threshold=-1))
    assert all(p.output and not p.details["no_answer"] for p in always)
    never = qa.run([off_topic, on_topic], context_for(no_answer_threshold=1.0))
    assert [p.output for p in never] == ["", ""]
    assert all(p.details["threshold"] == 1.0 for p in never)


def test_sentences_of_a_context_are_embedded_once_across_questions(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three questions on one context, then a fourth in a second run: each sentence of the
    context reaches the model exactly once (later lookups are cache hits)."""
    marker = f"Kestrel{np.random.default_rng().integers(10**9)}"  # texts no test embedded before
    context = (
        f"The {marker} observatory stands on a hill. It was built in 1911. "
        "Its telescope has a mirror of 2 metres."
    )
    embedded: list[str] = []
    real = encoder._embed

    def spy(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return real(texts)

    monkeypatch.setattr(encoder, "_embed", spy)
    questions = [
        f"When was the {marker} observatory built?",
        f"Where does the {marker} observatory stand?",
        "How big is the mirror of the telescope?",
    ]
    hits_before = encoder.cache.stats.hits
    preds = qa.run([example(q, context, row=i) for i, q in enumerate(questions)], context_for())
    assert all(p.status == "ok" for p in preds)
    sentences = [s.text for s in split_sentences(context)]
    assert len(sentences) == 3
    assert all(embedded.count(s) == 1 for s in sentences), embedded
    qa.run([example(f"What stands on a hill near {marker}?", context, row=9)], context_for())
    assert all(embedded.count(s) == 1 for s in sentences)  # the second run hit the cache
    assert encoder.cache.stats.hits - hits_before >= 3 * len(questions)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("When was the bridge opened?", "when"),
        ("In what year did the war end?", "when"),
        ("How many lanes does it carry?", "number"),
        ("What percentage of voters agreed?", "number"),
        ("Who designed the bridge?", "who"),
        ("Where is Normandy?", "where"),
        ("In what country is Normandy located?", "where"),
        ("What was the camp called?", "what"),
    ],
)
def test_answer_type_from_the_wh_word(question: str, kind: str) -> None:
    assert qa.answer_type(question) == kind


def test_type_score() -> None:
    """The share of capitalised words for who/where: "Duke Richard II of" has 3 of 4."""
    assert qa.type_score("when", ["in", "1932"]) == 1.0
    assert qa.type_score("when", ["eight", "years"]) == 0.0
    assert qa.type_score("number", ["eight", "years"]) == 1.0
    assert qa.type_score("who", ["Duke", "Richard", "II", "of"]) == 0.75
    assert qa.type_score("what", ["Danube"]) == 0.0


def test_malformed_items_never_raise(encoder: Encoder) -> None:
    """Blank contexts or questions, punctuation-only contexts and objects that are not QA
    examples become failed predictions (or an honest no answer) next to good ones."""
    good = example("Which river does Vienna lie on?", VIENNA, ["Danube"], row=1)
    items: list[Any] = [
        good,
        example("Which river?", "   \n  ", row=2),
        example("   ", VIENNA, row=3),
        example("What is it?", "... !!! ???", row=4),
        {"question": "a dict", "context": "not a QAExample"},
        None,
    ]
    preds = qa.run(items, context_for())
    assert len(preds) == len(items)
    assert preds[0].status == "ok" and preds[0].output == "Danube"
    assert [p.status for p in preds[1:3]] == ["failed", "failed"]
    assert "context is blank" in preds[1].reason and "question is blank" in preds[2].reason
    assert preds[3].output == "" and preds[3].details["no_answer"] is True  # no word to pick
    assert preds[4].status == preds[5].status == "failed"
    assert "not a QA example" in preds[4].reason
    assert preds[4].where == Where(file="qa.jsonl", row=5) and preds[5].id == "item-6"
    assert qa.score(items, preds)["total"] == 1.0  # only the good one has references


def test_packaged_sample_is_answered_exactly(encoder: Encoder) -> None:
    """The four QA rows shipped in taskloop/samples (three answerable, one not)."""
    import json

    import taskloop.samples

    path = Path(taskloop.samples.__file__).parent / "tasks" / "data" / "qa.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    exs = [
        QAExample.model_validate({**r, "where": Where(file="data/qa.jsonl", row=i)})
        for i, r in enumerate(rows, 1)
    ]
    preds = qa.run(exs, context_for())
    got = qa.score(exs, preds)
    assert got["exact"] == 1.0 and got["total"] == 4, [p.output for p in preds]


def test_empty_input() -> None:
    assert qa.run([], context_for()) == []
    assert qa.score([], []) == {}


# ------------------------------------------------------------------------- scoring


def test_score_by_hand() -> None:
    """SQuAD v2 EM/F1 on five scoreable items (the sixth has no reference):

    q1 "Danube" vs ["the Danube", "Danube"]: EM 1, F1 1.
    q2 "a Roman camp called Vindobona" vs ["Vindobona camp"]: normalised tokens
       {roman, camp, called, vindobona} vs {vindobona, camp}: 2 shared, P = 2/4, R = 2/2,
       F1 = 2PR/(P+R) = 2(1/2)(1)/(3/2) = 2/3; EM 0.
    q3 unanswerable, "": EM 1, F1 1.    q4 unanswerable, "Vienna": 0, 0.
    q5 ["256"], skipped (no output): 0, 0, counted missing.
    q6 answers [] and is_impossible unset: not scored.

    exact = (1+0+1+0+0)/5 = 0.4; f1 = (1 + 2/3 + 1)/5 = 8/15;
    HasAns (q1,q2,q5): exact 1/3, f1 (1 + 2/3)/3 = 5/9; NoAns (q3,q4): 1/2.
    """
    exs = [
        example("Which river?", VIENNA, ["the Danube", "Danube"], row=1),
        example("Which camp?", VIENNA, ["Vindobona camp"], row=2),
        example("Who?", VIENNA, is_impossible=True, row=3),
        example("Who else?", VIENNA, is_impossible=True, row=4),
        example("How many bits?", VIENNA, ["256"], row=5),
        example("Anything?", VIENNA, row=6),
    ]
    outputs: list[str | None] = ["Danube", "a Roman camp called Vindobona", "", "Vienna", None, "x"]
    preds = [
        Prediction(
            id=e.id,
            task="qa",
            where=e.where,
            output=o,
            status="skipped" if o is None else "ok",
        )
        for e, o in zip(exs, outputs, strict=True)
    ]
    expected = {
        "exact": 0.4,
        "f1": 8 / 15,
        "total": 5.0,
        "HasAns_exact": 1 / 3,
        "HasAns_f1": 5 / 9,
        "HasAns_total": 3.0,
        "NoAns_exact": 0.5,
        "NoAns_f1": 0.5,
        "NoAns_total": 2.0,
        "missing": 1.0,
    }
    got = qa.score(exs, preds)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value), key
    # Predictions in another order are matched by id.
    assert qa.score(exs, list(reversed(preds))) == got


def test_is_impossible_wins_over_stray_answers() -> None:
    """An item marked unanswerable is scored against "" even if it lists answers."""
    ex = example("Who?", VIENNA, ["Vienna"], is_impossible=True)
    pred = Prediction(id=ex.id, task="qa", where=ex.where, output="", status="ok")
    assert qa.score([ex], [pred])["NoAns_exact"] == 1.0


# ---------------------------------------------------------------- HF QA head (tiny BERT)


def build_tiny_bert_qa(out: Path, texts: Sequence[str], max_length: int = 64) -> Path:
    """A 1-layer random BertForQuestionAnswering with a word-level BERT-style tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForQuestionAnswering, PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]:
        vocab.setdefault(token, len(vocab))
    for text in texts:
        for token in re.findall(r"\w+|[^\w\s]", text):
            vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_length,
        pad_token_id=vocab["[PAD]"],
    )
    BertForQuestionAnswering(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_qa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [VIENNA, BRIDGE, LONG_CONTEXT, "Which river does Vienna lie on? How long is it?"]
    return build_tiny_bert_qa(tmp_path_factory.mktemp("tiny-bert-qa"), texts)


def test_qa_head_path_gives_spans_of_the_context(tiny_bert_qa: Path) -> None:
    """Random weights, so only structure: each answer is "" (null won) or the context at
    its offsets; a long context is read in several windows and that is reported; a
    question longer than the window fails that item only."""
    long_question = " ".join(["river"] * 80) + "?"
    exs = [
        example("Which river does Vienna lie on?", VIENNA, ["Danube"], row=1),
        example("How long is the bridge?", BRIDGE, row=2),
        example("Which river does Vienna lie on?", LONG_CONTEXT, row=3),
        example(long_question, VIENNA, row=4),
    ]
    preds = qa.run(exs, context_for(model=str(tiny_bert_qa)))
    assert [p.status == "failed" for p in preds] == [False, False, False, True]
    assert "window" in preds[3].reason
    lm = load_model(str(tiny_bert_qa))
    assert lm.kind == "qa"
    tokens = count_tokens(lm, [exs[2].question + " " + LONG_CONTEXT])[0]
    assert tokens > lm.window  # the long context really needs windows
    for ex, pred in zip(exs[:3], preds[:3], strict=True):
        assert pred.mode == "extractive" and pred.model == lm.describe()
        assert pred.status == status_from_checks(pred.checks)
        d = pred.details
        if d["no_answer"]:
            assert pred.output == "" and d["start"] is None
        else:
            assert pred.output == ex.context[d["start"] : d["end"]] and pred.output
            assert {c.name for c in pred.checks if c.passed} >= {"span_of_context", "non_empty"}
            assert d["evidence"] and pred.output.split()[0] in d["evidence"]
        assert 0.0 <= d["confidence"] <= 1.0
    assert [p.details["windows"] for p in preds[:2]] == [1, 1]
    assert preds[0].truncation == [] and preds[1].truncation == []
    assert preds[2].details["windows"] >= 2
    (note,) = preds[2].truncation
    assert f"{preds[2].details['windows']} overlapping windows" in note


def _window(offsets: list[tuple[int, int] | None], cls: int = 0) -> qa._Window:
    return qa._Window(item=0, ids={}, offsets=offsets, cls=cls)


# Tokens: [CLS] which river [SEP] Vienna lies on the Danube [SEP]
DANUBE = "Vienna lies on the Danube"
DANUBE_OFFSETS: list[tuple[int, int] | None] = [
    None, None, None, None, (0, 6), (7, 11), (12, 14), (15, 18), (19, 25), None,
]  # fmt: skip


def test_best_span_respects_end_after_start() -> None:
    """start logits peak at "Danube" (10), end logits at "Vienna" (10) and "Danube" (1).
    The pair (Danube → Vienna) would score 20 but ends before it starts; the valid best
    is (Danube, Danube) = 10 + 1 = 11 > (Vienna, Vienna) = 0 + 10; null = 0 + 0 < 11."""
    s = np.zeros(10)
    e = np.zeros(10)
    s[8], e[4], e[8] = 10, 10, 1
    ex = example("which river", DANUBE)
    ans = qa._best_qa_span(ex, [(_window(DANUBE_OFFSETS), s, e)], 64, 16)
    assert (ans.text, ans.start, ans.end, ans.no_answer) == ("Danube", 19, 25, False)
    assert ans.extra["span_score"] == 11.0 and ans.extra["null_score"] == 0.0


def test_null_score_wins_and_windows_merge() -> None:
    """Window 1: best span "lies" scores 2 + 2 = 4, null (CLS) 3 + 3 = 6.
    Window 2: best span "Danube" scores 5 + 5 = 10, null 1 + 1 = 2.
    Across windows the best span (10) beats the smallest null (2): "Danube". With the
    second window alone removed, null 6 > span 4: no answer."""
    s1, e1 = np.zeros(10), np.zeros(10)
    s1[0], e1[0], s1[5], e1[5] = 3, 3, 2, 2
    s2, e2 = np.zeros(10), np.zeros(10)
    s2[0], e2[0], s2[8], e2[8] = 1, 1, 5, 5
    ex = example("which river", DANUBE)
    w = _window(DANUBE_OFFSETS)
    both = qa._best_qa_span(ex, [(w, s1, e1), (w, s2, e2)], 64, 16)
    assert (both.text, both.no_answer) == ("Danube", False)
    assert both.extra["null_score"] == 2.0 and both.extra["windows"] == 2
    assert "2 overlapping windows" in both.truncation[0]
    alone = qa._best_qa_span(ex, [(w, s1, e1)], 64, 16)
    assert (alone.text, alone.no_answer) == ("", True)
    assert alone.extra == {"windows": 1, "null_score": 6.0, "best_span_score": 4.0}
    # P(start=CLS) * P(end=CLS) over CLS + the 5 context tokens: (e^3 / (e^3 + e^2 + 4))^2.
    p = math.exp(3) / (math.exp(3) + math.exp(2) + 4)
    assert alone.confidence == pytest.approx(p * p, abs=1e-4)


# --------------------------------------------------------------- generative (tiny T5)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [VIENNA, BRIDGE, LONG_CONTEXT, "question: context: Which river When was the"]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-t5"), "seq2seq", texts=texts)


def test_generative_path_structure(tiny_t5: Path) -> None:
    """Noise answers from a random T5, so structure only: the mode, checks per answer,
    a long context reduced to the retrieved sentences that fit the 64-token window (and
    reported), and the second run served from the generation cache."""
    exs = [
        example("Which river does Vienna lie on?", VIENNA, ["Danube"], row=1),
        example("When was the bridge opened?", BRIDGE, row=2),
        example("Which river does Vienna lie on?", LONG_CONTEXT, row=3),
    ]
    ctx = context_for(model=str(tiny_t5))
    preds = qa.run(exs, ctx)
    lm = load_model(str(tiny_t5))
    assert lm.kind == "seq2seq" and lm.window == 64
    for pred in preds:
        assert pred.mode == "generative" and pred.model == lm.describe()
        assert isinstance(pred.output, str)
        assert pred.status == status_from_checks(pred.checks)
        names = {c.name for c in pred.checks}
        if pred.details["no_answer"]:
            assert pred.output == "" and names == {"non_empty"}
        else:
            assert names == {"non_empty", "supported_by_context", "answer_length"}
        assert pred.details["input_tokens"] <= lm.window
    assert preds[0].truncation == [] and preds[1].truncation == []
    (note,) = preds[2].truncation
    assert re.search(r"kept \d+ of 9 sentences, the most similar to the question", note), note
    again = qa.run(exs, ctx)
    assert [p.output for p in again] == [p.output for p in preds]
    assert all(p.details["cached"] for p in again)


def test_generative_checks_and_context_reduction(
    tiny_t5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the generator replaced by canned answers: a supported answer is ok and located
    in the context, an unsupported one ("the Rhine") is flagged, "unanswerable" is the
    no-answer; and the reduced long context keeps the sentence about Vienna."""
    canned = {"Vienna": "Danube", "Rhine": "the Rhine", "Nothing": "unanswerable"}
    prompts: list[str] = []

    def fake_generate(
        lm: LoadedModel, inputs: Sequence[str], settings: GenerationSettings, *, cache: Any = None
    ) -> list[Generated]:
        prompts.extend(inputs)
        out = []
        for text in inputs:
            key = next(k for k in canned if f"question: {k}" in text)
            n = count_tokens(lm, [text])[0]
            out.append(Generated([canned[key]], input_tokens=n, truncated=False, cached=False))
        return out

    monkeypatch.setattr(qa, "generate", fake_generate)
    exs = [
        example("Vienna lies on which river?", LONG_CONTEXT, ["Danube"], row=1),
        example("Rhine or Danube?", VIENNA, row=2),
        example("Nothing here?", VIENNA, is_impossible=True, row=3),
    ]
    preds = qa.run(exs, context_for(model=str(tiny_t5)))
    ok, flagged, none = preds
    assert ok.status == "ok" and ok.output == "Danube" and ok.scores["exact"] == 1.0
    assert LONG_CONTEXT[ok.details["start"] : ok.details["end"]] == "Danube"
    assert ok.details["evidence"] == "Vienna lies on the Danube."
    assert "Vienna lies on the Danube." in prompts[0]
    assert sum(f in prompts[0] for f in FILLER) < len(FILLER)  # some filler had to go
    lm = load_model(str(tiny_t5))
    assert count_tokens(lm, [prompts[0]])[0] <= lm.window
    assert flagged.status == "flagged" and flagged.details["start"] is None
    (failed,) = flagged.failed_checks()
    assert failed.name == "supported_by_context" and "rhine" in failed.detail
    assert none.output == "" and none.details["no_answer"] and none.status == "ok"
    assert none.details["generated"] == "unanswerable"


def test_supported_by_context() -> None:
    """Content words of the answer in the context's content words (case-insensitive)."""
    assert qa.supported_by_context("the Danube", VIENNA).passed
    check = qa.supported_by_context("Rhine river", VIENNA)
    assert not check.passed and check.detail == "1/2 content words in the context; missing: rhine"
    assert qa.supported_by_context("Yes", VIENNA).passed  # yes/no questions


# ------------------------------------------------------------ model and mode problems


def test_model_not_found_skips_with_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exs = [example("Which river?", VIENNA, row=1), example("Which camp?", VIENNA, row=2)]
    preds = qa.run(exs, context_for(model="no-such-org/no-such-qa-model"))
    assert [p.status for p in preds] == ["skipped", "skipped"]
    for p in preds:
        assert p.output is None and p.model == "no-such-org/no-such-qa-model"
        assert "not in the Hugging Face cache" in p.reason
        assert "huggingface-cli download no-such-org/no-such-qa-model" in p.reason  # the hint
    assert qa.score(exs, preds) == {}  # no references, nothing to score


def test_generative_mode_without_a_model_is_skipped() -> None:
    (pred,) = qa.run([example("Which river?", VIENNA)], context_for(mode="generative"))
    assert pred.status == "skipped" and "set `model` to a seq2seq model" in pred.reason


def test_extractive_mode_with_a_seq2seq_model_is_skipped(tiny_t5: Path) -> None:
    ctx = context_for(model=str(tiny_t5), mode="extractive")
    (pred,) = qa.run([example("Which river?", VIENNA)], ctx)
    assert pred.status == "skipped" and "needs a question-answering model" in pred.reason
    assert "set mode to generative" in pred.reason


# ------------------------------------------------------------------ real SQuAD sample


@pytest.fixture
def squad_subset(shared_data: Path) -> list[QAExample]:
    """Every 12th question of the 626-question SQuAD v2 sample: 53 (27 answerable)."""
    return qa.squad_examples(shared_data / "qa" / "squad_v2_small.json")[::12]


def _outputs(exs: Sequence[QAExample], outputs: Sequence[str]) -> list[Prediction]:
    return [
        Prediction(id=e.id, task="qa", where=e.where, output=o, status="ok")
        for e, o in zip(exs, outputs, strict=True)
    ]


def test_offline_default_on_squad_sample(squad_subset: list[QAExample]) -> None:
    """Measured on these 53 questions: HasAns F1 0.346 (EM 0.222), overall F1 0.195.
    The floor, 0.19, is the measured figure minus 15 points; answering the first sentence
    (HasAns F1 0.131) or always "" (0.0) falls below it. Overall F1 cannot be the floor:
    always "" scores 0.49 on it, as 26 of the 53 are unanswerable."""
    floor = 0.19
    exs = squad_subset
    assert len(exs) == 53 and sum(not e.is_impossible for e in exs) == 27
    preds = qa.run(exs, context_for())
    got = qa.score(exs, preds)
    assert got["HasAns_f1"] >= floor, got
    assert got["total"] == 53 and got["missing"] == 0
    for pred, ex in zip(preds, exs, strict=True):
        assert pred.status == "ok"
        if pred.output:
            assert ex.context[pred.details["start"] : pred.details["end"]] == pred.output
    broken = {
        "first sentence": [split_sentences(e.context)[0].text for e in exs],
        "always no answer": [""] * len(exs),
    }
    for name, outputs in broken.items():
        assert qa.score(exs, _outputs(exs, outputs))["HasAns_f1"] < floor, name


def test_squad_examples_reads_v2_fields(shared_data: Path) -> None:
    exs = qa.squad_examples(shared_data / "qa" / "squad_v2_small.json")
    assert len(exs) == 626 and sum(bool(e.is_impossible) for e in exs) == 333
    first = exs[0]
    assert first.question == "In what country is Normandy located?"
    assert first.answers[0] == "France" and first.where == Where(file="squad_v2_small.json", row=1)


@pytest.mark.slow
def test_quality_benchmark_quick_runs(shared_data: Path) -> None:
    """benchmarks/qa_quality.py --quick prints its tables (about 20 s on 2 cores)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "qa_quality.py"
    data = shared_data / "qa" / "squad_v2_small.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for line in (
        "| offline default (threshold 0.4) |",
        "| baseline: always no answer |",
        "| baseline: best-retrieved sentence |",
        "## No-answer threshold, 2-fold cross-validated by article",
        "ms/question",
    ):
        assert line in proc.stdout, line


def test_a_sentence_longer_than_the_encoder_reads_is_reported() -> None:
    """The encoder reads 256 tokens; a 400-word sentence is ranked by its start only,
    and the prediction says so instead of cutting silently."""
    long_sentence = "The river " + " and the river".join(["flows"] * 130) + "."
    ctx_text = f"Vienna lies on the Danube. {long_sentence}"
    (pred,) = qa.run(
        [example(question="Which river flows through Vienna?", context=ctx_text)],
        context_for(),
    )
    assert any("context sentence 2 has" in t and "first 256" in t for t in pred.truncation)
