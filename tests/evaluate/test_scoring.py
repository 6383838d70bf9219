"""score_task and compare on crafted items of every task, against the reference libraries
and values computed by hand."""

from __future__ import annotations

from typing import Any

import pytest
import sacrebleu

from taskloop.evaluate.errors import EvalInputError, MetricError
from taskloop.evaluate.metrics import meteor_note, rouge_items
from taskloop.evaluate.records import EvalItem, TaskEval
from taskloop.evaluate.scoring import PRIMARY, code_counts, compare, score_task
from taskloop.models.encoder import Encoder, load_encoder


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder()


def tr(i: int, pred: str, ref: str | None, source: str = "") -> EvalItem:
    refs = (ref,) if ref is not None else ()
    return EvalItem(task="translate", id=str(i), file="t.jsonl", prediction=pred,
                    references=refs, source=source)  # fmt: skip


TRANSLATE = [
    tr(1, "Das Haus ist 12 Meter hoch.", "Das Haus ist 12 Meter hoch.", "The house is 12 m tall."),
    tr(2, "Der Hund läuft schnell.", "Der Hund rennt schnell.", "The dog runs fast."),
    tr(3, "", "Guten Morgen.", "Good morning."),
    tr(4, "Hallo 5", None, "Hello 5"),
]


def test_translate_metrics_equal_sacrebleu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Corpus BLEU/chrF++/TER over the 3 items with a reference equal sacrebleu's corpus
    functions; per-item chrF++ (the primary) equals sentence_chrf; the empty prediction
    scores BLEU 0, TER 100; the item without a reference gets only quality signals.
    Translation never needs the sentence encoder."""
    import taskloop.models.encoder as enc_module

    def no_encoder(*a: Any, **k: Any) -> None:
        raise AssertionError("translation must not load the encoder")

    monkeypatch.setattr(enc_module, "load_encoder", no_encoder)
    te = score_task(TRANSLATE, resamples=200)
    preds = [it.prediction for it in TRANSLATE[:3]]
    refs = [[it.references[0] for it in TRANSLATE[:3]]]
    assert te.primary == "bleu" and te.n == 4
    assert te.metrics["bleu"].value == pytest.approx(sacrebleu.corpus_bleu(preds, refs).score)
    chrf = sacrebleu.corpus_chrf(preds, refs, word_order=2).score
    assert te.metrics["chrf++"].value == pytest.approx(chrf)
    assert te.metrics["ter"].value == pytest.approx(sacrebleu.corpus_ter(preds, refs).score)
    assert te.metrics["ter"].higher_is_better is False
    assert (
        te.metrics["bleu"].signature == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    )
    assert te.metrics["bleu"].n == 3
    assert list(te.metrics)[:7] == ["bleu", "chrf++", "ter", "meteor", "rouge1", "rouge2", "rougeL"]
    for m in te.metrics.values():
        if m.low is not None:
            assert m.low <= m.value + 1e-9 and m.value <= m.high + 1e-9  # type: ignore[operator]
    assert te.metrics["meteor"].note == meteor_note()
    items = te.items
    assert items[1].primary == pytest.approx(
        sacrebleu.sentence_chrf(preds[1], [refs[0][1]], word_order=2).score
    )
    assert items[2].scores["bleu"] == 0.0 and items[2].scores["ter"] == 100.0
    assert items[2].primary == 0.0
    assert items[3].primary is None and set(items[3].scores) == {"factuality"}
    assert items[3].scores["factuality"] == 100.0  # "5" is in the source
    assert any("1 item(s) without references" in n for n in te.notes)
    assert "relevance" not in te.metrics and "coherence" not in te.metrics
    assert te.metrics["factuality"].note.startswith("share of the output's numbers found")
    assert (
        te.metrics["distinct-1"].low is None and te.metrics["self-bleu"].higher_is_better is False
    )


def test_without_quality_only_reference_metrics() -> None:
    te = score_task(TRANSLATE, quality=False, resamples=50)
    assert {m.group for m in te.metrics.values()} == {"reference"}


SUMMARIES = [
    EvalItem(
        task="summarize",
        id="a",
        source="The council met on Tuesday. It voted 7 to 2 to build 12 kilometres of bike "
        "lanes. The lanes will cost 4.5 million euros.",
        prediction="The council voted to build 12 km of bike lanes. They cost 4.5 million euros.",
        references=(
            "The council voted 7 to 2 for 12 kilometres of bike lanes costing 4.5 million euros.",
        ),
    ),
    EvalItem(
        task="summarize",
        id="b",
        source="A heat wave reaches the region on Friday. Pools stay open until 10 pm.",
        prediction="A heat wave arrives on Friday with 45 degrees.",
        references=("A heat wave arrives Friday; pools stay open late.",),
    ),
    EvalItem(
        task="summarize",
        id="c",
        source="The library reopens next week after repairs.",
        prediction="The library reopens next week.",
        references=(),
    ),
]


def test_summarize_rouge_primary_and_quality(encoder: Encoder) -> None:
    """rougeL is the primary (corpus mean and per item, from rouge-score); coherence,
    relevance, factuality and diversity are quality signals; the invented "45" lowers
    the second summary's factuality (45 not in the source: 0 of 1 numbers supported;
    "Friday" is at no sentence start so it is a name: found → 1 of 2 = 50)."""
    te = score_task(SUMMARIES, encoder=encoder, resamples=100)
    assert te.primary == PRIMARY["summarize"][0] == "rougeL"
    expected = rouge_items([s.prediction for s in SUMMARIES[:2]],
                           [list(s.references) for s in SUMMARIES[:2]])  # fmt: skip
    assert te.metrics["rougeL"].value == pytest.approx(sum(expected["rougeL"]) / 2)
    assert te.items[0].primary == pytest.approx(expected["rougeL"][0])
    assert list(te.metrics)[:3] == ["rouge1", "rouge2", "rougeL"]
    for name in ("coherence", "relevance", "factuality", "distinct-1", "self-bleu"):
        assert te.metrics[name].group == "quality", name
    assert te.items[1].scores["factuality"] == pytest.approx(50.0)
    assert te.items[0].scores["factuality"] == 100.0
    assert "coherence" not in te.items[1].scores  # one sentence: not scored
    assert te.metrics["coherence"].n == 1
    assert te.items[2].primary is None and "relevance" in te.items[2].scores


class Counting:
    """An encoder that counts encode calls (everything else goes to the real one)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.calls = inner, 0

    def encode(self, texts: Any) -> Any:
        self.calls += 1
        return self.inner.encode(texts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_quality_signals_batch_the_encoder(encoder: Encoder) -> None:
    """30 summaries: one encode call for coherence and one for relevance, not one per item."""
    items = [s.model_copy(update={"id": f"{s.id}{k}"}) for s in SUMMARIES for k in range(10)]
    counting: Any = Counting(encoder)
    score_task(items, encoder=counting, resamples=20)
    assert counting.calls == 2


QA = [
    # HasAns: "the cat sat" → [cat, sat] vs "a cat sat down" → [cat, sat, down]:
    # P 1, R 2/3, F1 0.8 → 80; exact 0.
    EvalItem(
        task="qa",
        id="1",
        prediction="the cat sat",
        references=("a cat sat down",),
        question="Who sat?",
        answerable=True,
    ),
    # NoAns answered with "": exact = f1 = 100; decision right.
    EvalItem(task="qa", id="2", prediction="", answerable=False, question="Why?"),
    # NoAns answered with text: 0; decision wrong (answer for no_answer).
    EvalItem(task="qa", id="3", prediction="Paris", answerable=False, question="Where?"),
    # HasAns left blank: 0; decision wrong (no_answer for answer).
    EvalItem(task="qa", id="4", prediction="", references=("Berlin",), answerable=True),
    # Failed prediction: 0 for exact/f1, left out of the decision.
    EvalItem(task="qa", id="5", prediction="", references=("Rome",), status="failed"),
    # Nothing to score: no gold and not marked unanswerable.
    EvalItem(task="qa", id="6", prediction="x"),
]


def test_qa_squad_scores_and_no_answer_confusion(encoder: Encoder) -> None:
    """Scored items 1-5: exact [0, 100, 0, 0, 0] → 20; f1 [80, 100, 0, 0, 0] → 36.
    HasAns (1, 4, 5): f1 80/3, exact 0. NoAns (2, 3): f1 = exact = 50.
    Decision (items 1-4): true [answer, no_answer, no_answer, answer], predicted
    [answer, no_answer, answer, no_answer] → 2 of 4 right = 50; confusion [[1, 1], [1, 1]]."""
    te = score_task(QA, encoder=encoder, resamples=100)
    m = te.metrics
    assert te.primary == "f1"
    assert te.items[0].primary == pytest.approx(80.0)
    assert m["exact"].value == pytest.approx(20.0) and m["f1"].value == pytest.approx(36.0)
    assert m["exact"].n == 5
    assert m["HasAns_f1"].value == pytest.approx(80 / 3) and m["HasAns_exact"].value == 0.0
    assert m["NoAns_f1"].value == pytest.approx(50.0) and m["NoAns_exact"].value == 50.0
    assert m["no_answer_accuracy"].value == pytest.approx(50.0)
    assert m["no_answer_accuracy"].group == "classification" and m["no_answer_accuracy"].n == 4
    assert te.classification["labels"] == ["answer", "no_answer"]
    assert te.classification["confusion"] == [[1, 1], [1, 1]]
    assert te.items[5].primary is None
    assert any("1 question(s) with no gold" in n for n in te.notes)
    assert any("1 prediction(s) failed or skipped" in n for n in te.notes)
    # Relevance of the answer to the question: only non-empty answers with a question.
    assert "relevance" in te.items[0].scores and "relevance" not in te.items[1].scores
    assert m["relevance"].group == "quality"


def code(i: int, **fields: Any) -> EvalItem:
    return EvalItem(task="codegen", id=str(i), **{"prediction": "def f(): pass", **fields})


def test_codegen_pass_at_k_from_sample_counts() -> None:
    """Problem 1: n 5, c 2 → pass@1 0.4, pass@2 1 − C(3,2)/C(5,2) = 0.7.
    Problem 2 (taskloop run details: 2 samples, 1 passed): pass@1 0.5, pass@2 1.
    Means: pass@1 45, pass@2 85; pass@10 not computed (a problem has 2 samples)."""
    items = [
        code(1, samples=5, correct=2),
        code(
            2,
            details={
                "samples": [{"reference": "passed"}, {"reference": "failed"}],
                "reference_passed": 1,
            },
        ),
    ]
    te = score_task(items, ks=(1, 2, 10), resamples=100)
    assert te.primary == "pass@1"
    assert te.metrics["pass@1"].value == pytest.approx(45.0)
    assert te.metrics["pass@2"].value == pytest.approx(85.0)
    assert "pass@10" not in te.metrics
    assert any("pass@10 not computed" in n for n in te.notes)
    assert [it.primary for it in te.items] == pytest.approx([40.0, 50.0])


def test_codegen_counts_derived_from_checks_and_status() -> None:
    """The rule of code_counts: failed reference_tests → 0/1; ok with reference_passed 1 →
    1/1; status failed → 0/1; skipped → not scored; samples whose reference test never
    ran (no reference test) → not scored. pass@1 over the three scored = 1/3 → 33.3."""
    items = [
        code(1, status="flagged", failed_checks=("reference_tests",)),
        code(2, status="ok", details={"reference_passed": 1}),
        code(3, status="failed", prediction=""),
        code(4, status="skipped"),
        code(
            5,
            details={"samples": [{"reference": None}], "reference_passed": 0},
            samples=1,
            correct=0,
        ),
    ]
    assert [code_counts(it) for it in items] == [(1, 0), (1, 1), (1, 0), None, None]
    te = score_task(items, resamples=100)
    assert te.metrics["pass@1"].value == pytest.approx(100 / 3)
    assert any("2 problem(s) without a reference-test result" in n for n in te.notes)
    assert any("1 problem(s) produced no code" in n for n in te.notes)


def test_items_of_several_tasks_are_refused() -> None:
    with pytest.raises(MetricError, match="qa, translate"):
        score_task([TRANSLATE[0], QA[0]])
    with pytest.raises(MetricError, match="no items"):
        score_task([])


# --- compare ----------------------------------------------------------------------------------

NOUNS = [
    "dog", "cat", "bird", "horse", "fish", "cow", "goat", "sheep",
    "duck", "mouse", "frog", "bee", "owl", "fox", "bear", "wolf",
]  # fmt: skip
REFS = [f"the {n} sleeps in the garden every day" for n in NOUNS]


def translations(preds: list[str], ids: range | None = None) -> TaskEval:
    ids = ids or range(len(REFS))
    return score_task([tr(i, preds[i], REFS[i]) for i in ids], quality=False, resamples=200)


def test_compare_finds_the_better_version() -> None:
    """A drops the last two words of every reference, B equals it: B is better in every
    resample for BLEU (higher) and TER (lower) → p = 0, significant; the A value is the
    corpus BLEU of A on the shared items (sacrebleu)."""
    worse = [" ".join(r.split()[:-2]) for r in REFS]
    a, b = translations(worse), translations(REFS)
    got = {c.metric: c for c in compare(a, b, resamples=200)}
    assert got["bleu"].a == pytest.approx(sacrebleu.corpus_bleu(worse, [REFS]).score)
    assert got["bleu"].b == pytest.approx(100.0)
    assert got["bleu"].delta > 0 and got["bleu"].p_value == 0.0 and got["bleu"].significant
    assert got["ter"].higher_is_better is False and got["ter"].delta < 0
    assert got["ter"].p_value == 0.0 and got["ter"].significant
    assert got["chrf++"].n == len(REFS)
    # Swapped: A is now the better one, nothing says B wins.
    back = {c.metric: c for c in compare(b, a, resamples=200)}
    assert back["bleu"].p_value == 1.0 and not back["bleu"].significant


def test_compare_identical_versions() -> None:
    a = translations([r.replace("every", "each") for r in REFS])
    for c in compare(a, a, resamples=200):
        assert c.delta == 0.0 and c.p_value == 1.0 and not c.significant, c.metric


def test_compare_pairs_by_key_and_leaves_unmatched_out() -> None:
    """B has items 0-9 only: each comparison is over those 10 pairs."""
    worse = [" ".join(r.split()[:-2]) for r in REFS]
    a, b = translations(worse), translations(REFS, range(10))
    got = compare(a, b, resamples=100, metrics=["bleu", "rougeL"])
    assert [c.metric for c in got] == ["bleu", "rougeL"]
    assert all(c.n == 10 for c in got)
    assert got[0].a == pytest.approx(sacrebleu.corpus_bleu(worse[:10], [REFS[:10]]).score)


def test_compare_refuses_what_cannot_be_paired() -> None:
    a = translations(REFS)
    with pytest.raises(EvalInputError, match="share 1 item"):
        compare(a, translations(REFS, range(1)))
    other_refs = score_task([tr(i, REFS[i], REFS[i] + " now") for i in range(3)], quality=False)
    with pytest.raises(EvalInputError, match="different references"):
        compare(translations(REFS, range(3)), other_refs)
    with pytest.raises(EvalInputError, match="cannot compare translate with qa"):
        compare(a, score_task(QA[:2], quality=False))
    with pytest.raises(MetricError, match="'distinct-1' cannot be compared"):
        compare(a, a, metrics=["distinct-1"])


def test_compare_qa_f1_per_item() -> None:
    """Per-item F1 means: A answers half the questions right (F1 50), B all (100)."""
    golds = [f"answer {n}" for n in NOUNS]
    items_a = [EvalItem(task="qa", id=str(i), prediction=g if i % 2 else "wrong",
                        references=(g,), answerable=True) for i, g in enumerate(golds)]  # fmt: skip
    items_b = [it.model_copy(update={"prediction": it.references[0]}) for it in items_a]
    a = score_task(items_a, quality=False, resamples=100)
    b = score_task(items_b, quality=False, resamples=100)
    got = {c.metric: c for c in compare(a, b, resamples=300)}
    assert got["f1"].a == pytest.approx(50.0) and got["f1"].b == pytest.approx(100.0)
    assert got["f1"].delta == pytest.approx(50.0) and got["f1"].significant
