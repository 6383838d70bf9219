"""Bootstrap intervals and paired bootstrap significance against numpy and sacrebleu.

The draw is documented: ``default_rng(seed).integers(0, n, size=(R, n))``; the tests
repeat it by hand and recompute each resample's score the slow, obvious way.
"""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from taskloop.evaluate.errors import MetricError
from taskloop.evaluate.metrics import corpus_stats
from taskloop.evaluate.stats import Mean, bootstrap_ci, paired_bootstrap, resample_weights


def test_resample_weights_count_the_drawn_indices() -> None:
    """Row r counts how often each item appears in idx[r]; every row sums to n."""
    idx = np.random.default_rng(3).integers(0, 5, size=(4, 5))
    w = resample_weights(5, 4, seed=3)
    assert w.shape == (4, 5)
    for r in range(4):
        assert w[r].tolist() == np.bincount(idx[r], minlength=5).tolist()
    assert (w.sum(axis=1) == 5).all()


def test_mean_interval_equals_numpy_percentiles_of_resampled_means() -> None:
    """values 0, 1, 2, 10; R = 7 resamples with seed 0. The interval is
    numpy.percentile([mean(values[idx[r]]) for r], [2.5, 97.5]) and the value the plain
    mean 13/4 = 3.25."""
    values = np.array([0.0, 1.0, 2.0, 10.0])
    idx = np.random.default_rng(0).integers(0, 4, size=(7, 4))
    means = values[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    got = bootstrap_ci(values, resamples=7, confidence=0.95, seed=0)
    assert got.value == pytest.approx(3.25)
    assert (got.low, got.high) == pytest.approx((low, high))
    assert got.n == 4 and got.resamples == 7
    # A 50% interval is the 25th-75th percentiles.
    got50 = bootstrap_ci(values, resamples=7, confidence=0.5, seed=0)
    assert (got50.low, got50.high) == pytest.approx(tuple(np.percentile(means, [25, 75])))


def test_constant_values_have_a_zero_width_interval() -> None:
    got = bootstrap_ci([40.0] * 6)
    assert (got.value, got.low, got.high) == pytest.approx((40.0, 40.0, 40.0))


def test_fewer_than_two_items_have_no_interval() -> None:
    got = bootstrap_ci([70.0])
    assert got.value == 70.0 and got.low is None and got.high is None
    with pytest.raises(MetricError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(MetricError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(MetricError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_corpus_bleu_interval_resamples_sufficient_statistics() -> None:
    """Each resample's BLEU from weighted summed statistics equals sacrebleu's corpus_bleu
    of the resampled sentences themselves; the interval is their percentiles."""
    hyps = ["the cat sat", "a dog ran away", "birds fly south", "it rains", "we eat now"]
    refs = [["the cat sat down"], ["a dog ran off"], ["birds fly south"], ["it is raining"],
            ["we eat"]]  # fmt: skip
    cs = corpus_stats("bleu", hyps, refs)
    idx = np.random.default_rng(1).integers(0, 5, size=(20, 5))
    slow = [
        sacrebleu.corpus_bleu([hyps[i] for i in row], [[refs[i][0] for i in row]]).score
        for row in idx
    ]
    assert cs(resample_weights(5, 20, seed=1)) == pytest.approx(slow)
    got = bootstrap_ci(cs, resamples=20, seed=1)
    assert got.value == pytest.approx(sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs]]).score)
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(slow, [2.5, 97.5])))


def test_identical_systems_are_not_significantly_different() -> None:
    """Same per-item scores: every resample's delta is 0, which is "not better", so
    p = 1 (>= 0.4) and the delta and its interval are 0."""
    a = np.random.default_rng(5).uniform(0, 100, size=50)
    got = paired_bootstrap(a, a.copy(), resamples=300)
    assert got.delta == 0.0 and got.p_value == 1.0
    assert (got.low, got.high) == (0.0, 0.0)


def test_uniformly_better_system_is_significant() -> None:
    """B = A + 5 on every item: every resample's delta is +5 → p = 0, delta 5."""
    a = np.random.default_rng(5).uniform(0, 90, size=30)
    got = paired_bootstrap(a, a + 5.0, resamples=300)
    assert got.delta == pytest.approx(5.0) and got.p_value == 0.0
    assert got.low == pytest.approx(5.0) and got.high == pytest.approx(5.0)
    # The same data with lower-is-better (TER): B is worse in every resample, p = 1.
    assert paired_bootstrap(a, a + 5.0, higher_is_better=False, resamples=300).p_value == 1.0


def test_paired_bootstrap_by_hand() -> None:
    """A = [0, 0], B = [0, 10]; delta = mean(B) − mean(A) = 5. A resample is better for B
    exactly when it draws item 2 at least once: p = share of rows of idx that are all 0."""
    idx = np.random.default_rng(2).integers(0, 2, size=(40, 2))
    expected_p = float(np.mean((idx == 0).all(axis=1)))
    deltas = np.array([0.0, 10.0])[idx].mean(axis=1)
    got = paired_bootstrap([0.0, 0.0], [0.0, 10.0], resamples=40, seed=2)
    assert got.delta == 5.0 and got.p_value == pytest.approx(expected_p)
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(deltas, [2.5, 97.5])))


def test_ter_lower_is_better_in_paired_bootstrap() -> None:
    """System B's outputs equal the references: TER 0 vs A's > 0, so with
    higher_is_better False B wins every resample (p = 0) and delta < 0."""
    refs = [[f"sentence number {i} is here"] for i in range(12)]
    a = corpus_stats("ter", [f"sentence {i} here" for i in range(12)], refs)
    b = corpus_stats("ter", [r[0] for r in refs], refs)
    got = paired_bootstrap(a, b, higher_is_better=False, resamples=200)
    assert got.b == 0.0 and got.delta < 0 and got.p_value == 0.0


def test_paired_bootstrap_errors_and_tiny_inputs() -> None:
    with pytest.raises(MetricError, match="same items"):
        paired_bootstrap([1.0, 2.0], [1.0])
    one = paired_bootstrap([1.0], [2.0])
    assert one.delta == 1.0 and one.low is None and one.p_value == 1.0
    assert Mean(np.array([1.0, 3.0])).n == 2


def test_zero_resamples_gives_the_value_without_an_interval() -> None:
    """resamples=0: the mean of [1, 2, 3] is 2 and there is no interval to report."""
    iv = bootstrap_ci([1.0, 2.0, 3.0], resamples=0)
    assert iv.value == 2.0 and iv.low is None and iv.high is None
