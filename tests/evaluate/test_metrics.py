"""Task metrics against values computed by hand."""

from __future__ import annotations

import pytest

from taskloop.evaluate.metrics import (
    bleu_chrf,
    exact_match,
    normalize_answer,
    pass_at_k,
    rouge,
    sentence_chrf,
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
