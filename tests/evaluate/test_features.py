"""feature_selection: a crafted classifier where only "good" matters ranks it first with the
importance computed by hand; normalisation, counts, filtering, weights and the files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from taskloop.evaluate.errors import ExplainError
from taskloop.evaluate.explain import Attribution
from taskloop.evaluate.features import (
    UNKNOWN_WEIGHT,
    Feature,
    FeatureRanking,
    feature_ranking,
    feature_selection,
    feature_weights,
    filter_inputs,
    write_ranking,
)
from taskloop.models.loader import load_model
from taskloop.models.tiny import build_tiny_model
from tests.evaluate.test_explain import GOOD_SCALE, crafted_lm


def _attr(words: list[str], scores: list[float], method: str = "ig") -> Attribution:
    """A classifier attribution with one token per word plus a trailing special token."""
    return Attribution(
        method=method,  # type: ignore[arg-type]
        kind="classify",
        source=" ".join(words),
        source_tokens=[*words, "</s>"],
        source_special=[False] * len(words) + [True],
        words=words,
        word_index=[*range(len(words)), None],
        target_text="pos",
        target_tokens=["pos"],
        target_special=[False],
        row_labels=["pos"],
        scores=[[*scores, 5.0]],  # the special token's score must be ignored
        outputs=[0.0],
    )


def test_crafted_classifier_ranks_good_first() -> None:
    """Only "good" moves the "pos" logit (3 per occurrence), so per example:
    "the movie was good": |a| = (0, 0, 0, 3), mean 0.75 → good = 3 / 0.75 = 4;
    "the plot was good and long": mean 3/6 = 0.5 → good = 6;
    "good acting": mean 1.5 → good = 2;
    "the movie was long": all zero → left out.
    good: importance = (4 + 6 + 2) / 3 = 4, signed the same, count 3; every other word 0.
    Words left with min_count 2: good, the (2), was (2); movie and long count once each
    (the all-zero example is not counted)."""
    texts = ["the movie was good", "the plot was good and long", "good acting",
             "the movie was long"]  # fmt: skip
    lm = crafted_lm(texts)
    ranking = feature_selection(lm, texts, method="ig", n_steps=10, label="pos", min_count=2)
    first = ranking.features[0]
    assert first.word == "good"
    assert first.importance == pytest.approx(4.0, abs=1e-5)
    assert first.signed == pytest.approx(4.0, abs=1e-5)
    assert (first.count, first.examples) == (3, 3)
    assert all(f.importance == pytest.approx(0.0, abs=1e-6) for f in ranking.features[1:])
    assert {f.word for f in ranking.features} == {"good", "the", "was"}
    assert ranking.n_examples == 4 and ranking.skipped == 1
    assert ranking.method == "ig"
    assert GOOD_SCALE == 3.0  # the scale the hand computation above uses


def test_normalisation_counts_and_order() -> None:
    """Example 1: |a| = (1, 3) over (a, b): mean 2 → a 0.5, b 1.5.
    Example 2: (A, b, c) = (−2, 2, 2): mean 2 → a 1 (signed −1), b 1, c 1.
    lowercase: a = mean(0.5, 1) = 0.75, signed mean(0.5, −1) = −0.25, count 2;
    b = mean(1.5, 1) = 1.25, count 2; c count 1 < min_count 2 → dropped.
    Order: b, a. The special token's 5.0 is ignored."""
    ranking = feature_ranking(
        [_attr(["a", "b"], [1.0, -3.0]), _attr(["A", "b", "c"], [-2.0, 2.0, 2.0])], min_count=2
    )
    assert [f.word for f in ranking.features] == ["b", "a"]
    b, a = ranking.features
    assert b.importance == pytest.approx(1.25) and b.signed == pytest.approx(-0.25)
    assert a.importance == pytest.approx(0.75) and a.signed == pytest.approx(-0.25)
    assert (a.count, a.examples) == (2, 2)
    assert any("fewer than 2" in n for n in ranking.notes)
    cased = feature_ranking([_attr(["a"], [1.0]), _attr(["A"], [1.0])], min_count=2,
                            lowercase=False)  # fmt: skip
    assert cased.features == []  # "a" and "A" are different words, once each


def test_sub_word_pieces_are_summed_per_word() -> None:
    """Tokens play|ing|now with |a| = 1, 2, 3 → words playing = 3, now = 3: mean 3 → 1 each."""
    attr = _attr(["x"], [0.0])
    attr.words, attr.word_index = ["playing", "now"], [0, 0, 1, None]
    attr.source_tokens = ["play", "ing", "now", "</s>"]
    attr.scores = [[1.0, -2.0, 3.0, 9.0]]
    ranking = feature_ranking([attr], min_count=1)
    assert {f.word: f.importance for f in ranking.features} == {"playing": 1.0, "now": 1.0}
    assert {f.word: f.signed for f in ranking.features}["playing"] == pytest.approx(-1 / 3)


def test_top_k_and_bad_arguments() -> None:
    ranking = feature_ranking([_attr(["a", "b", "c"], [3.0, 2.0, 1.0])], top_k=2, min_count=1)
    assert [f.word for f in ranking.top] == ["a", "b"] and len(ranking.features) == 3
    with pytest.raises(ExplainError, match="at least 1"):
        feature_ranking([], top_k=0)
    with pytest.raises(ExplainError, match="no examples"):
        feature_ranking([])


def _ranking(weights: dict[str, float]) -> FeatureRanking:
    return FeatureRanking(
        method="ig",
        model="m",
        n_examples=1,
        features=[Feature(w, v, v, 2, 1) for w, v in weights.items()],
    )


def test_filter_inputs_drops_least_important_words() -> None:
    """Weights: good 4, movie 0.5, the 0.1, "!" 0.2; "was" unknown → 1.0.
    "The movie was good!" has 5 words; keep 0.6 → ceil(3) = 3: good, was, movie stay, in
    their order, with the spacing between "movie was" kept and a space before "good"."""
    ranking = _ranking({"good": 4.0, "movie": 0.5, "the": 0.1, "!": 0.2})
    assert filter_inputs(["The movie was good!"], ranking, keep=0.6) == ["movie was good"]
    assert filter_inputs(["The movie was good!"], ranking, keep=2) == ["was good"]
    assert filter_inputs(["good!"], ranking, keep=1.0) == ["good!"]
    assert filter_inputs(["", "  "], ranking, keep=0.5) == ["", "  "]
    for bad in (0.0, 1.5, 0, -1, True):
        with pytest.raises(ExplainError, match="keep must be"):
            filter_inputs(["x"], ranking, keep=bad)


def test_feature_weights() -> None:
    ranking = _ranking({"good": 4.0, "movie": 0.5})
    ranking.top_k = 1
    assert feature_weights(ranking) == {"good": 4.0, "movie": 0.5}
    assert feature_weights(ranking, top_only=True) == {"good": 4.0}
    assert ranking.weight("GOOD") == 4.0 and ranking.weight("unseen") == UNKNOWN_WEIGHT


def test_write_ranking_files(tmp_path: Path) -> None:
    from matplotlib.image import imread

    ranking = _ranking({"good": 4.0, "bad": -0.5, "<b>": 0.25})
    written = write_ranking(ranking, tmp_path)
    assert [p.name for p, _ in written] == ["features.json", "features.csv", "features.png"]
    data = json.loads((tmp_path / "features.json").read_text(encoding="utf-8"))
    assert [f["word"] for f in data["features"]] == ["good", "bad", "<b>"]
    with (tmp_path / "features.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0] == {"rank": "1", "word": "good", "importance": "4", "signed": "4",
                       "count": "2", "examples": "1"}  # fmt: skip
    assert imread(tmp_path / "features.png").ndim == 3


def test_feature_selection_on_a_generator(tmp_path: Path) -> None:
    """Generators rank words by their attribution to the whole output's log-probability;
    given targets skip generation; a target list of the wrong length is refused."""
    lm = load_model(str(build_tiny_model(tmp_path / "s2s", "seq2seq", max_length=24)))
    texts = ["The dog runs", "The dog plays in the park", "A dog runs"]
    ranking = feature_selection(lm, texts, method="saliency", targets=["Hund"] * 3, min_count=2)
    assert ranking.n_examples == 3 and ranking.method == "saliency"
    assert {f.word for f in ranking.features} == {"the", "dog", "runs"}
    counts = {f.word: f.count for f in ranking.features}
    assert counts == {"the": 3, "dog": 3, "runs": 2}
    with pytest.raises(ExplainError, match="2 targets for 3 texts"):
        feature_selection(lm, texts, targets=["a", "b"])
