"""Bootstrap confidence intervals and paired bootstrap significance, vectorised with numpy.

A *statistic* maps resampling weights to scores: ``weights`` has shape (R, n), row r
counting how often each of the n items was drawn in resample r (row sums are n), and the
statistic returns the R scores. A mean of per-item values is ``weights @ values / n``;
a corpus metric (BLEU, chrF, TER) sums its per-item sufficient statistics with
``weights @ stats`` and scores each row (:class:`taskloop.evaluate.metrics.CorpusStats`).
So the whole bootstrap is one (R, n) index draw and one matrix product, not R Python loops
over the items.

The draw is ``numpy.random.default_rng(seed).integers(0, n, size=(R, n))``: resample r
takes items ``idx[r]``; the interval is the percentile interval of the R scores
(``numpy.percentile``, linear interpolation), as sacrebleu's own bootstrap computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from taskloop.evaluate.errors import MetricError


@runtime_checkable
class Statistic(Protocol):
    """Scores of weighted resamples of n items (see the module docstring)."""

    @property
    def n(self) -> int: ...

    def __call__(self, weights: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Mean:
    """The mean of per-item values as a :class:`Statistic`."""

    values: np.ndarray

    @property
    def n(self) -> int:
        return len(self.values)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        return np.asarray(weights @ self.values / weights.sum(axis=1), dtype=np.float64)


@dataclass(frozen=True)
class Interval:
    """A value with its percentile bootstrap interval (``low``/``high`` None when n < 2)."""

    value: float
    low: float | None
    high: float | None
    confidence: float
    n: int
    resamples: int


@dataclass(frozen=True)
class Paired:
    """Paired bootstrap of B against A on the same items (Koehn 2004).

    ``delta`` is b - a; ``low``/``high`` its interval; ``p_value`` the share of resamples
    in which B is not better than A (ties count as not better).
    """

    a: float
    b: float
    delta: float
    low: float | None
    high: float | None
    p_value: float
    n: int
    resamples: int
    higher_is_better: bool


def as_statistic(data: Statistic | Sequence[float] | np.ndarray) -> Statistic:
    """A statistic as is; per-item values as their :class:`Mean`."""
    if isinstance(data, Statistic):
        return data
    values = np.asarray(data, dtype=np.float64)
    if values.ndim != 1:
        raise MetricError(
            f"bootstrap needs one value per item, got an array of shape {values.shape}",
            hint="pass per-item values (a flat list) or a statistic over resample weights",
        )
    if not np.isfinite(values).all():
        raise MetricError(
            "bootstrap values contain NaN or infinity",
            hint="drop the items a metric did not score before bootstrapping",
        )
    return Mean(values)


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: how often resample r drew item i (one draw for everything)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    flat = (idx + np.arange(resamples)[:, None] * n).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def _check(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise MetricError(f"resamples must be at least 1, got {resamples}", hint="use 1000")
    if not 0.0 < confidence < 1.0:
        raise MetricError(f"confidence must be between 0 and 1, got {confidence}", hint="use 0.95")


def _percentiles(scores: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(scores, [tail, 100.0 - tail])
    return float(low), float(high)


def _full(stat: Statistic) -> float:
    return float(stat(np.ones((1, stat.n)))[0])


def bootstrap_ci(
    data: Statistic | Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of a statistic (or of the mean of per-item values).

    ``resamples=0`` gives the value alone (no interval), for when only numbers are wanted.

    Raises:
        MetricError: no items, values that are not finite, or bad resamples/confidence.
    """
    _check(max(1, resamples), confidence)
    stat = as_statistic(data)
    if stat.n == 0:
        raise MetricError("bootstrap of an empty set", hint="score at least one item")
    value = _full(stat)
    if stat.n < 2 or resamples == 0:
        return Interval(value, None, None, confidence, stat.n, 0)
    scores = stat(resample_weights(stat.n, resamples, seed))
    low, high = _percentiles(scores, confidence)
    return Interval(value, low, high, confidence, stat.n, resamples)


def paired_bootstrap(
    a: Statistic | Sequence[float] | np.ndarray,
    b: Statistic | Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool = True,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Paired:
    """Koehn's (2004) paired bootstrap: A and B scored on the same resampled items.

    With fewer than two items nothing can be concluded: no interval and p = 1.

    Raises:
        MetricError: A and B cover a different number of items, or bad arguments.
    """
    _check(resamples, confidence)
    sa, sb = as_statistic(a), as_statistic(b)
    if sa.n != sb.n:
        raise MetricError(
            f"paired bootstrap needs the same items for A and B, got {sa.n} and {sb.n}",
            hint="pair the items by id before comparing",
        )
    if sa.n == 0:
        raise MetricError("paired bootstrap of an empty set", hint="compare at least two items")
    va, vb = _full(sa), _full(sb)
    if sa.n < 2:
        return Paired(va, vb, vb - va, None, None, 1.0, sa.n, 0, higher_is_better)
    weights = resample_weights(sa.n, resamples, seed)
    deltas = sb(weights) - sa(weights)
    not_better = deltas <= 0 if higher_is_better else deltas >= 0
    low, high = _percentiles(deltas, confidence)
    return Paired(
        va,
        vb,
        vb - va,
        low,
        high,
        float(np.mean(not_better)),
        sa.n,
        resamples,
        higher_is_better,
    )
