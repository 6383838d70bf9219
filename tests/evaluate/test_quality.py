"""Reference-free quality signals with the real packaged all-MiniLM-L6-v2 encoder.

The encoder's judgements are asserted only where they are unmistakable (a sentence with
itself, a cat with bank revenue); the counting signals are checked by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sacrebleu

from taskloop.evaluate.errors import MetricError
from taskloop.evaluate.quality import (
    coherence,
    coherence_batch,
    distinct_n,
    diversity,
    factuality,
    factuality_batch,
    relevance,
    self_bleu_items,
)
from taskloop.models.encoder import Encoder, load_encoder


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder()


class Counting:
    """An encoder wrapper that counts encode calls."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.calls, self.name = inner, 0, inner.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return self.inner.encode(texts)


def test_coherence_of_a_repeated_sentence_is_100(encoder: Encoder) -> None:
    """Two identical sentences: cosine 1 → 100. Unrelated ones: far lower."""
    same = coherence("The cat sat on the mat. The cat sat on the mat.", encoder)
    other = coherence(
        "The cat sat on the mat. Quarterly revenue at the bank rose by a third.", encoder
    )
    assert same == pytest.approx(100.0, abs=0.01)
    assert other is not None and other < 40.0


def test_single_sentence_is_not_scored(encoder: Encoder) -> None:
    assert coherence("Only one sentence here.", encoder) is None
    assert coherence("", encoder) is None


def test_coherence_batch_uses_one_encoder_call(encoder: Encoder) -> None:
    """Three texts → one encode call; values equal the one-by-one coherence."""
    texts = [
        "It rained all day. The streets flooded. Schools closed early.",
        "Just one.",
        "The match ended 2-1. Fans celebrated in the square.",
    ]
    counting: Any = Counting(encoder)
    got = coherence_batch(texts, counting)
    assert counting.calls == 1
    assert got[1] is None
    assert got[0] == pytest.approx(coherence(texts[0], encoder), abs=1e-4)
    assert got[2] == pytest.approx(coherence(texts[2], encoder), abs=1e-4)


def test_relevance_to_source(encoder: Encoder) -> None:
    """An output about the source scores higher than one about something else; empty
    outputs are not scored; all pairs go through one encoder call."""
    counting: Any = Counting(encoder)
    src = "The city council voted to build twelve kilometres of protected bike lanes."
    got = relevance(
        ["The council approved new bike lanes.", "A recipe for apple pie.", ""],
        [src, src, src],
        counting,
    )
    assert counting.calls == 1
    assert got[0] is not None and got[1] is not None and got[2] is None
    assert got[0] > got[1] + 30
    assert 0.0 <= got[1] <= 100.0
    with pytest.raises(MetricError, match="2 outputs but 1 sources"):
        relevance(["a", "b"], ["c"], encoder)


SOURCE = "The plant in Lyon employs 1,200 workers and 35 engineers."


def test_factuality_catches_a_hallucinated_number() -> None:
    """Facts of the output: numbers 1200 (= "1,200" canonically) and 53, name "Lyon".
    53 is not in the source: 2 of 3 supported → 66.67. Numbers only: 1 of 2 → 50."""
    out = "The plant in Lyon employs 1200 workers and 53 engineers."
    got = factuality(out, SOURCE)
    assert got is not None
    assert (got.checked, got.supported, got.unsupported) == (3, 2, ("53",))
    assert got.score == pytest.approx(200 / 3) and got.method == "numbers+names"
    numbers_only = factuality(out, SOURCE, with_names=False)
    assert numbers_only is not None and numbers_only.score == pytest.approx(50.0)
    assert numbers_only.method == "numbers"


def test_factuality_names_are_case_insensitive_and_invented_names_fail() -> None:
    """ "LYON" matches "Lyon"; "Paris" is not in the source: 1 of 2 names."""
    got = factuality("They moved from LYON to Paris.", SOURCE)
    assert got is not None and got.checked == 2 and got.unsupported == ("Paris",)


def test_factuality_without_facts_is_not_scored() -> None:
    assert factuality("they work there", SOURCE) is None


def test_factuality_with_an_nli_model(tmp_path: Path) -> None:
    """With NLI: the mean P(entailment) over the output's sentences (× 100), computed
    in one batch; the tiny random model's probabilities come from entailment_probs."""
    from taskloop.tasks.factcheck import entailment_probs, load_nli
    from tests.tasks.test_factcheck import build_tiny_nli

    path = build_tiny_nli(tmp_path / "nli", {0: "contradiction", 1: "neutral", 2: "entailment"})
    nli = load_nli(str(path), device="cpu")
    outputs = ["The plant employs workers. It has engineers.", ""]
    got = factuality_batch(outputs, [SOURCE, SOURCE], nli)
    probs, _ = entailment_probs(
        nli, [SOURCE, SOURCE], ["The plant employs workers.", "It has engineers."]
    )
    assert got[1] is None
    assert got[0] is not None and got[0].method == f"nli:{path}"
    assert got[0].score == pytest.approx(100 * float(np.mean(probs)), abs=1e-4)
    assert got[0].checked == 2


def test_distinct_n_by_hand() -> None:
    """ "a b a" and "A b c" (lower-cased): unigrams a b a a b c → 6, unique a b c → 3 →
    distinct-1 = 50; bigrams ab ba ab bc → 4, unique 3 → distinct-2 = 75."""
    assert distinct_n(["a b a", "A b c"], 1) == pytest.approx(50.0)
    assert distinct_n(["a b a", "A b c"], 2) == pytest.approx(75.0)
    assert distinct_n(["x"], 2) is None


def test_diversity_and_self_bleu() -> None:
    """Empty outputs are left out; self-BLEU of each output is its sacrebleu sentence
    BLEU against all other outputs; a duplicated output has self-BLEU 100."""
    outs = ["the cat sat on the mat", "a dog ran in the park", "the cat sat on the mat",
            "birds sing at dawn", ""]  # fmt: skip
    got = diversity(outs)
    kept = outs[:4]
    expected = [sacrebleu.sentence_bleu(kept[i], kept[:i] + kept[i + 1 :]).score for i in range(4)]
    assert got.n == 4 and got.hypotheses == 4 and got.note == ""
    assert list(got.self_bleu_items) == pytest.approx(expected)
    assert got.self_bleu_items[0] == pytest.approx(100.0)
    assert got.self_bleu == pytest.approx(float(np.mean(expected)))
    # Unigrams 6 + 6 + 6 + 4 = 22; unique: the cat sat on mat a dog ran in park birds
    # sing at dawn = 14 → distinct-1 = 1400/22.
    assert got.distinct_1 == pytest.approx(1400 / 22)


def test_self_bleu_samples_hypotheses_above_the_limit() -> None:
    """12 outputs, limit 5: 5 hypotheses (a fixed-seed sample), still against all
    others; the note says so, and the same seed gives the same sample."""
    outs = [f"output number {i} says {'x ' * (i % 4)}hello" for i in range(12)]
    got = diversity(outs, max_hypotheses=5)
    assert got.hypotheses == 5 and "sample of 5 of 12" in got.note
    assert diversity(outs, max_hypotheses=5).self_bleu == got.self_bleu
    scores, n = self_bleu_items(outs[:1])
    assert scores == [] and n == 1
