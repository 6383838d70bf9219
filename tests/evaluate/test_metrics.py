"""Task metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from taskloop.evaluate import metrics as metrics_module
from taskloop.evaluate.errors import MetricError
from taskloop.evaluate.metrics import (
    answer_label,
    bleu_chrf,
    classification_metrics,
    corpus_scores,
    corpus_stats,
    exact_match,
    meteor_items,
    meteor_mode,
    meteor_note,
    no_answer_accuracy,
    normalize_answer,
    pass_at_k,
    reference_streams,
    rouge,
    rouge_items,
    sentence_chrf,
    sentence_scores,
    token_f1,
)

# --- SQuAD EM / F1 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Danube!", "danube"),
        ("  an  Apple, a pear  ", "apple pear"),
        ("theatre", "theatre"),  # "the" only as a whole word
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer(text: str, normalised: str) -> None:
    """Lower case, punctuation dropped, articles a/an/the dropped, whitespace collapsed."""
    assert normalize_answer(text) == normalised


def test_exact_match() -> None:
    """Equal after normalisation with any gold → 1, else 0."""
    assert exact_match("The Danube!", ["danube"]) == 1.0
    assert exact_match("Danube river", ["Danube", "the Danube"]) == 0.0
    assert exact_match("the Rhine", ["Danube", "Rhine"]) == 1.0


def test_token_f1_by_hand() -> None:
    """pred "the river Danube" → [river, danube]; gold "Danube river in Europe" →
    [danube, river, in, europe]. Common 2: P = 2/2, R = 2/4, F1 = 2·1·0.5/1.5 = 2/3."""
    assert token_f1("the river Danube", ["Danube river in Europe"]) == pytest.approx(2 / 3)


def test_token_f1_counts_repeats_once_each() -> None:
    """pred "x x y" vs gold "x y y": common = min counts (x: 1, y: 1) = 2;
    P = 2/3, R = 2/3, F1 = 2/3."""
    assert token_f1("x x y", ["x y y"]) == pytest.approx(2 / 3)


def test_token_f1_takes_the_best_gold() -> None:
    """vs "Danube" : P = 1/2, R = 1, F1 = 2/3; vs "river Danube": 1.0 → max 1.0."""
    assert token_f1("river Danube", ["Danube", "river Danube"]) == 1.0
    assert token_f1("river Danube", ["Danube"]) == pytest.approx(2 / 3)
    assert token_f1("Rhine", ["Danube"]) == 0.0


def test_unanswerable_questions() -> None:
    """No gold (or golds that normalise to nothing, like "the") means "no answer": only
    the empty prediction scores, 1.0 for EM and F1; any text scores 0."""
    for golds in ([], [""], ["the", " "]):
        assert exact_match("", golds) == 1.0
        assert token_f1("", golds) == 1.0
        assert exact_match("Danube", golds) == 0.0
        assert token_f1("Danube", golds) == 0.0
    # An answerable question answered with nothing scores 0.
    assert exact_match("", ["Danube"]) == 0.0
    assert token_f1("", ["Danube"]) == 0.0


# --- ROUGE ---------------------------------------------------------------------------------


def test_rouge_by_hand() -> None:
    """pred "the cat sat on the mat", ref "the cat lay on the rug" (6 tokens each).

    ROUGE-1: common unigrams the×2, cat, on = 4 → P = R = 4/6, F = 2/3.
    ROUGE-2: pred bigrams the-cat cat-sat sat-on on-the the-mat; ref the-cat cat-lay
    lay-on on-the the-rug; common the-cat, on-the = 2 → P = R = 2/5, F = 0.4.
    ROUGE-L: LCS "the cat on the" = 4 → F = 2/3.
    """
    scores = rouge(["the cat sat on the mat"], [["the cat lay on the rug"]])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(0.4)
    assert scores["rougeL"] == pytest.approx(2 / 3)


def test_rouge_best_reference_and_mean() -> None:
    """Item 1: refs "a b d" (R1: 2/3) and "a b c" (1.0) → best 1.0. Item 2: "x y" vs
    "x z": P = R = 1/2 → 0.5. Mean ROUGE-1 = (1.0 + 0.5) / 2 = 0.75."""
    scores = rouge(["a b c", "x y"], [["a b d", "a b c"], ["x z"]])
    assert scores["rouge1"] == pytest.approx(0.75)


def test_rouge_stems_and_skips_items_without_references() -> None:
    """Porter stemming: "running cats" and "run cat" share both stems → 1.0. The item
    with only blank references does not count in the mean."""
    scores = rouge(["running cats", "anything"], [["run cat"], ["  "]])
    assert scores["rouge1"] == pytest.approx(1.0)
    assert rouge(["x"], [[""]]) == {}


# --- BLEU / chrF++ -------------------------------------------------------------------------


def test_bleu_and_chrf_of_identical_text() -> None:
    refs = ["Das Modell läuft auf einer einzigen GPU .", "Ein Hund rennt über die Wiese ."]
    scores = bleu_chrf(refs, refs)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf++"] == pytest.approx(100.0)
    assert sentence_chrf(refs[0], refs[0]) == pytest.approx(100.0)


def test_bleu_of_disjoint_text_is_zero() -> None:
    scores = bleu_chrf(["aaa bbb ccc ddd"], ["www xxx yyy zzz"])
    assert scores["bleu"] == pytest.approx(0.0)
    assert scores["chrf++"] == pytest.approx(0.0)
    assert bleu_chrf([], []) == {}


def test_bleu_by_hand() -> None:
    """pred "a b c d e" vs ref "a b c d f" (5 tokens each, no brevity penalty):
    precisions 1-gram 4/5, 2-gram 3/4, 3-gram 2/3, 4-gram 1/2;
    BLEU = (4/5 · 3/4 · 2/3 · 1/2)^(1/4) = 0.2^(1/4) = 0.66874 → 66.874."""
    assert bleu_chrf(["a b c d e"], ["a b c d f"])["bleu"] == pytest.approx(66.874, abs=1e-3)


# --- pass@k --------------------------------------------------------------------------------


def test_pass_at_k_by_hand() -> None:
    """n = 5 samples, c = 2 correct. pass@k = 1 − C(n−c, k) / C(n, k):
    k = 1: 1 − C(3,1)/C(5,1) = 1 − 3/5 = 0.4
    k = 2: 1 − C(3,2)/C(5,2) = 1 − 3/10 = 0.7
    k = 4: 1 − C(3,4)/C(5,4) = 1 − 0 = 1.0 (any 4 of 5 include a correct one)."""
    assert pass_at_k([5], [2], 1) == pytest.approx(0.4)
    assert pass_at_k([5], [2], 2) == pytest.approx(0.7)
    assert pass_at_k([5], [2], 4) == pytest.approx(1.0)


def test_pass_at_k_is_the_mean_over_problems() -> None:
    """Problem 1: n=5, c=2, k=1 → 0.4; problem 2: n=5, c=0 → 0; problem 3: all correct
    → 1. Mean = 1.4 / 3."""
    assert pass_at_k([5, 5, 5], [2, 0, 5], 1) == pytest.approx(1.4 / 3)
    assert pass_at_k([], [], 1) == 0.0


# =========================================================================================
# Evaluation metrics (0-100): sacrebleu objects with signatures and sufficient statistics,
# ROUGE/METEOR per item, classification, no-answer accuracy.
# =========================================================================================

PREDS = ["The cat sat on the mat.", "A dog runs fast", "hello world", ""]
REFS = [
    ["The cat sat on a mat.", "A cat sat on the mat."],  # two references
    ["The dog runs quickly"],
    ["hello there world"],
    ["nothing here"],  # an empty prediction scores 0 against it
]


def test_reference_streams_pad_missing_references_with_none() -> None:
    """sacrebleu wants refs[j][i] = j-th reference of item i; an item with fewer
    references gets None there (sacrebleu then skips it). Blank references are dropped."""
    assert reference_streams([["a", "b"], ["c"], ["d", " "]]) == [
        ["a", "c", "d"],
        ["b", None, None],
    ]
    with pytest.raises(MetricError, match="item 2 has no reference"):
        reference_streams([["a"], ["  "]])


def test_corpus_scores_equal_sacrebleu_with_several_references() -> None:
    """Our BLEU/chrF++/TER objects give what sacrebleu's corpus functions give on the same
    padded reference streams, and the signature records the variable reference count."""
    import sacrebleu

    streams = [[r[0] for r in REFS], [r[1] if len(r) > 1 else None for r in REFS]]
    scores = corpus_scores(PREDS, REFS)
    assert scores["bleu"].value == pytest.approx(sacrebleu.corpus_bleu(PREDS, streams).score)
    chrf = sacrebleu.corpus_chrf(PREDS, streams, word_order=2).score
    assert scores["chrf++"].value == pytest.approx(chrf)
    assert scores["ter"].value == pytest.approx(sacrebleu.corpus_ter(PREDS, streams).score)
    assert scores["bleu"].signature.startswith("nrefs:var|case:mixed|eff:no|tok:13a")
    assert "nw:2" in scores["chrf++"].signature  # chrF++, not chrF
    assert "tok:tercom" in scores["ter"].signature
    assert not scores["ter"].higher_is_better and scores["bleu"].higher_is_better
    assert corpus_scores([], []) == {}


@pytest.mark.parametrize("name", ["bleu", "chrf++", "ter"])
def test_summed_sufficient_statistics_give_the_corpus_score(name: str) -> None:
    """A corpus score is computed from the sum of per-item statistics, so summing our
    (n, d) statistics and scoring the sum equals sacrebleu's corpus_score; weights of
    all ones (the full set, as the bootstrap sees it) give the same."""
    cs = corpus_stats(name, PREDS, REFS)
    assert cs.stats.shape[0] == 4 and cs.n == 4
    expected = corpus_scores(PREDS, REFS, metrics=[name])[name].value
    assert cs.value == pytest.approx(expected, abs=1e-9)
    assert cs(np.ones((1, 4)))[0] == pytest.approx(expected, abs=1e-9)
    # Weight 2 on item 1 and 0 on item 2 = the corpus [p1, p1, p3, p4].
    resampled = [PREDS[0], PREDS[0], PREDS[2], PREDS[3]]
    resampled_refs = [REFS[0], REFS[0], REFS[2], REFS[3]]
    again = corpus_scores(resampled, resampled_refs, metrics=[name])[name].value
    assert cs(np.array([[2.0, 0.0, 1.0, 1.0]]))[0] == pytest.approx(again, abs=1e-9)


def test_sentence_scores_equal_sacrebleu_sentence_functions() -> None:
    """Sentence BLEU uses effective order (as sacrebleu.sentence_bleu); all three equal
    sacrebleu's sentence functions item by item; an empty prediction: BLEU 0, TER 100."""
    import sacrebleu

    got = sentence_scores(PREDS, REFS)
    for i, (p, r) in enumerate(zip(PREDS, REFS, strict=True)):
        assert got["bleu"][i] == pytest.approx(sacrebleu.sentence_bleu(p, r).score)
        assert got["chrf++"][i] == pytest.approx(sacrebleu.sentence_chrf(p, r, word_order=2).score)
        assert got["ter"][i] == pytest.approx(sacrebleu.sentence_ter(p, r).score)
    assert got["bleu"][3] == 0.0 and got["ter"][3] == 100.0


def test_unknown_metric_and_length_mismatch() -> None:
    with pytest.raises(MetricError, match="unknown sacrebleu metric 'meteor'"):
        corpus_stats("meteor", ["a"], [["a"]])
    with pytest.raises(MetricError, match="2 predictions but 1 reference lists"):
        corpus_stats("bleu", ["a", "b"], [["a"]])


def test_rouge_items_by_hand_and_best_reference() -> None:
    """Item 1 is test_rouge_by_hand's pair (ROUGE-1 2/3, ROUGE-2 0.4, ROUGE-L 2/3), ×100.
    Item 2: vs "x z" ROUGE-1 1/2, vs "x y" 1 → best 100."""
    got = rouge_items(
        ["the cat sat on the mat", "x y"], [["the cat lay on the rug"], ["x z", "x y"]]
    )
    assert got["rouge1"] == pytest.approx([200 / 3, 100.0])
    assert got["rouge2"][0] == pytest.approx(40.0)
    assert got["rougeL"][0] == pytest.approx(200 / 3)


def test_meteor_exact_and_stem_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """hyp "black cats sat on a mat" (6 tokens), ref "the black cat sat on mats" (6).

    Exact matches: black, sat, on (3); Porter-stem matches: cats~cat, mat~mats (2);
    "a" and "the" unmatched. m = 5, P = 5/6, R = 5/6.
    Fmean = P·R / (α·P + (1−α)·R) with α = 0.9 → (25/36) / (5/6) = 5/6.
    Chunks (adjacent in both): hyp 0-3 → ref 1-4 is one chunk, hyp 5 → ref 5 another: 2.
    Penalty = γ·(chunks/m)^β = 0.5 · (2/5)^3 = 0.032.
    METEOR = (1 − 0.032) · 5/6 = 0.80667 → 80.667.
    """
    monkeypatch.setattr(metrics_module, "meteor_mode", lambda: "exact+stem")
    got = meteor_items(["black cats sat on a mat"], [["the black cat sat on mats"]])
    assert got[0] == pytest.approx(100 * (1 - 0.5 * 0.4**3) * 5 / 6)
    # Best over references: the identical reference has 1 chunk of 6 matches:
    # (1 − 0.5·(1/6)^3) · 1 = 0.99769.
    got = meteor_items(["a b c d e f"], [["x y", "a b c d e f"]])
    assert got[0] == pytest.approx(100 * (1 - 0.5 * (1 / 6) ** 3))


def test_meteor_mode_reports_whether_wordnet_is_there() -> None:
    """The mode follows whether nltk finds its WordNet data; the note says the fallback."""
    from nltk.corpus import wordnet

    try:
        wordnet.synsets("dog")
        present = True
    except LookupError:
        present = False
    assert meteor_mode() == ("wordnet" if present else "exact+stem")
    assert meteor_note() == (
        "" if present else "METEOR without WordNet synonyms: exact and stem matches only"
    )


def test_classification_metrics_by_hand() -> None:
    """true a a a b b c, predicted a a b b c c.

    a: TP 2, FP 0, FN 1 → P 1, R 2/3, F1 0.8, support 3
    b: TP 1, FP 1 (item 3), FN 1 (item 5) → P 1/2, R 1/2, F1 1/2, support 2
    c: TP 1, FP 1 (item 5), FN 0 → P 1/2, R 1, F1 2/3, support 1
    d (listed, never seen): all 0 (zero_division=0), support 0
    macro over a, b, c, d: P (1 + .5 + .5 + 0)/4 = 0.5, F1 (0.8 + 0.5 + 2/3 + 0)/4
    micro: TP 4, FP 2, FN 2 → P = R = F1 = 4/6; accuracy 4/6.
    """
    got = classification_metrics(list("aaabbc"), list("aabbcc"), labels=["a", "b", "c", "d"])
    assert got["labels"] == ["a", "b", "c", "d"]
    assert got["per_class"]["a"] == pytest.approx(
        {"precision": 100.0, "recall": 200 / 3, "f1": 80.0, "support": 3}
    )
    assert got["per_class"]["b"]["f1"] == pytest.approx(50.0)
    assert got["per_class"]["c"]["f1"] == pytest.approx(200 / 3)
    assert got["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert got["macro"]["precision"] == pytest.approx(50.0)
    assert got["macro"]["f1"] == pytest.approx(100 * (0.8 + 0.5 + 2 / 3) / 4)
    assert got["micro"] == pytest.approx({"precision": 400 / 6, "recall": 400 / 6, "f1": 400 / 6})
    assert got["accuracy"] == pytest.approx(400 / 6)
    assert got["confusion"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert classification_metrics(["x"], ["y"])["labels"] == ["x", "y"]
    with pytest.raises(MetricError):
        classification_metrics(["a"], [])


def test_no_answer_accuracy_by_hand() -> None:
    """ "Paris" on an answerable question: right; "" on an unanswerable one: right; "the"
    normalises to "" (no answer) on an answerable one: wrong; "" on answerable: wrong.
    2 of 4 → 50."""
    got = no_answer_accuracy(["Paris", "", "the", ""], [True, False, True, True])
    assert got == pytest.approx(50.0)
    assert answer_label(" The ") == "no_answer" and answer_label("Paris") == "answer"
    with pytest.raises(MetricError):
        no_answer_accuracy(["a"], [True, False])
