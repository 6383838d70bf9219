"""Dynamic curriculum: per-example difficulty, and pacing driven by each task's validation metric.

Each example gets a difficulty in [0, 1] (length, word rarity and, when known, the model's
current loss and the example's ``hardness`` from ``taskloop evaluate``'s hard examples,
each as a percentile rank within its task). Each task holds a *competence*: the
share of its examples, easiest first, that training may draw from. Competence grows when the
task's validation metric improves and backs off when it drops (:func:`update_pacing`);
:func:`curriculum_learning` turns a competence into the indices to sample from.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from taskloop.data.pairs import Pair
from taskloop.train.errors import CheckpointError, TrainConfigError, TrainDataError

DEFAULT_WEIGHTS: dict[str, float] = {"length": 0.4, "rarity": 0.3, "loss": 0.3, "hardness": 0.3}
_WORD = re.compile(r"\w+")
_DIGITS = 12  # competence is rounded so that 0.4 + 0.2 is 0.6 in checkpoints and tests


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each value scaled to [0, 1] (smallest 0, largest 1, ties share their mean rank).

    One value, or all values equal, rank 0.5.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.full(1, 0.5)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of the first of each tie group
    mean_rank = first + (counts - 1) / 2.0
    return np.asarray(mean_rank[inverse] / (n - 1), dtype=float)


def _within_tasks(tasks: Sequence[str], values: np.ndarray) -> np.ndarray:
    """Percentile ranks computed separately within each task."""
    out = np.zeros(len(values))
    for task in dict.fromkeys(tasks):
        idx = np.array([i for i, t in enumerate(tasks) if t == task])
        out[idx] = percentile_rank(values[idx])
    return out


def _per_pair(name: str, values: Sequence[float] | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise TrainDataError(
            f"difficulty: {name} has shape {arr.shape}, expected one value per pair ({n})",
            hint=f"pass {name} in the same order as the pairs",
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise TrainDataError(f"difficulty: {name}[{bad}] is {arr[bad]}, not a finite number")
    return arr


def _rarity(pairs: Sequence[Pair]) -> np.ndarray:
    """Mean of -log(relative frequency) of each pair's source and target words."""
    words = [_WORD.findall(f"{p.source}\n{p.target}".lower()) for p in pairs]
    counts = Counter(w for ws in words for w in ws)
    total = sum(counts.values())
    return np.array(
        [float(np.mean([-math.log(counts[w] / total) for w in ws])) if ws else 0.0 for ws in words]
    )


def _hardness(pairs: Sequence[Pair]) -> np.ndarray | None:
    """Each pair's hardness; a pair without one gets its task's median (None: no pair has one).

    The median, not 0, because a row without a hardness is not known to be easy: it simply
    was not through ``taskloop evaluate``.
    """
    raw = np.array([np.nan if p.hardness is None else p.hardness for p in pairs], dtype=float)
    if np.isnan(raw).all():
        return None
    tasks = [p.task for p in pairs]
    for task in dict.fromkeys(tasks):
        idx = np.array([i for i, t in enumerate(tasks) if t == task])
        known = raw[idx][~np.isnan(raw[idx])]
        # a task with no hardness at all ranks every pair 0.5: any constant does
        fill = float(np.median(known)) if known.size else 0.0
        raw[idx] = np.where(np.isnan(raw[idx]), fill, raw[idx])
    return raw


def difficulty(
    pairs: Sequence[Pair],
    *,
    token_lengths: Sequence[int] | None = None,
    losses: Sequence[float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """A difficulty in [0, 1] per pair (higher is harder): weighted mean of percentile ranks.

    Components, each ranked within the pair's task so tasks of different scales compare:
    ``length`` (``token_lengths``, else source+target whitespace words), ``rarity`` (mean
    ``-log`` relative frequency over the whole set of the pair's lowercased words),
    ``loss`` (the model's current loss per pair, only when ``losses`` is given) and
    ``hardness`` (:attr:`Pair.hardness`, from hard-example rows; pairs without one count as
    their task's median).

    Args:
        weights: replaces :data:`DEFAULT_WEIGHTS` (missing keys weigh 0). Without
            ``losses`` the loss weight is dropped, and without any pair that carries a
            hardness the hardness weight, and the rest renormalised.

    Raises:
        TrainConfigError: unknown or negative weight keys, or no positive weight left.
        TrainDataError: ``token_lengths``/``losses`` not one finite value per pair.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise TrainConfigError(
            f"curriculum weights: unknown key(s) {unknown}",
            hint=f"use only {sorted(DEFAULT_WEIGHTS)}",
        )
    if any(not (math.isfinite(w) and w >= 0) for w in weights.values()):
        raise TrainConfigError(f"curriculum weights must be finite and >= 0, got {weights}")
    n = len(pairs)
    lengths = _per_pair("token_lengths", token_lengths, n)
    loss = _per_pair("losses", losses, n)
    if loss is None:
        weights.pop("loss", None)
    hard = _hardness(pairs)
    if hard is None:
        weights.pop("hardness", None)
    total = sum(weights.values())
    if total <= 0:
        raise TrainConfigError(
            f"curriculum weights {weights} leave nothing to rank by"
            + (" (no losses were given)" if loss is None else "")
            + (" (no pair carries a hardness)" if hard is None else ""),
            hint="give a positive weight to length, rarity, loss or hardness",
        )
    if n == 0:
        return np.zeros(0)
    if lengths is None:
        lengths = np.array([len(p.source.split()) + len(p.target.split()) for p in pairs], float)
    tasks = [p.task for p in pairs]
    parts = {"length": lengths, "rarity": _rarity(pairs), "loss": loss, "hardness": hard}
    score = np.zeros(n)
    for key, w in weights.items():
        values = parts[key]
        if w > 0 and values is not None:
            score += (w / total) * _within_tasks(tasks, values)
    return np.clip(score, 0.0, 1.0)


@dataclass(frozen=True)
class Pacing:
    """How competence moves: ``start`` share, ``step`` up on improvement, ``backoff`` on a drop.

    ``min_delta``: improvement over the best needed to step up; ``tolerance``: how far below
    the best a metric may fall before backing off; ``floor`` (default ``start``): lowest
    competence. ``higher_is_better=False`` for metrics such as loss.
    """

    start: float = 0.3
    step: float = 0.15
    backoff: float = 0.1
    min_delta: float = 0.0
    tolerance: float = 0.0
    floor: float | None = None
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if self.floor is None:
            object.__setattr__(self, "floor", self.start)
        checks = {
            "0 < start <= 1": 0 < self.start <= 1,
            "0 < floor <= start": 0 < (self.floor or 0) <= self.start,
            "step, backoff, min_delta, tolerance >= 0": min(
                self.step, self.backoff, self.min_delta, self.tolerance
            )
            >= 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise TrainConfigError(f"curriculum pacing {self}: needs {'; '.join(failed)}")


@dataclass
class PacingState:
    """One task's pacing: competence ``c``, ``best`` metric so far, ``history`` of updates.

    ``history`` holds ``(step, metric, competence after the update)``.
    """

    c: float
    best: float | None = None
    history: list[tuple[int, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy, for checkpoints."""
        return {"c": self.c, "best": self.best, "history": [list(h) for h in self.history]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PacingState:
        """The state :meth:`to_dict` saved.

        Raises:
            CheckpointError: keys missing or of the wrong shape.
        """
        try:
            best = data["best"]
            history = [(int(s), float(m), float(c)) for s, m, c in data["history"]]
            return cls(
                c=float(data["c"]), best=None if best is None else float(best), history=history
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"curriculum state in checkpoint is malformed ({type(exc).__name__}: {exc})",
                hint="expected {'c': float, 'best': float|null, 'history': [[step, metric, c]]}",
            ) from exc


def update_pacing(state: PacingState, metric: float, step: int, pacing: Pacing) -> PacingState:
    """The state after one validation ``metric`` at training ``step`` (a new object; pure).

    Rule, with ``gain`` = metric - best (best - metric when lower is better):

    - first metric (no best yet): it becomes the best, competence unchanged;
    - ``gain > min_delta``: best = metric, competence += step (at most 1);
    - ``gain < -tolerance``: competence -= backoff (at least ``floor``), best kept;
    - otherwise unchanged (as in Keras' EarlyStopping, best moves only on a real gain).

    Raises:
        TrainDataError: the metric is not a finite number.
    """
    if not math.isfinite(metric):
        raise TrainDataError(
            f"curriculum: validation metric at step {step} is {metric}",
            hint="check the validation set and the loss for divergence",
        )
    c, best = state.c, state.best
    if best is None:
        best = metric
    else:
        gain = (metric - best) if pacing.higher_is_better else (best - metric)
        if gain > pacing.min_delta:
            best, c = metric, min(1.0, c + pacing.step)
        elif gain < -pacing.tolerance:
            c = max(pacing.floor or 0.0, c - pacing.backoff)
    c = round(c, _DIGITS)
    return replace(state, c=c, best=best, history=[*state.history, (step, metric, c)])


def curriculum_learning(difficulties: np.ndarray, competence: float) -> np.ndarray:
    """Indices of the easiest ``ceil(competence * n)`` examples (at least 1), easiest first.

    Ties keep their original order. Empty input gives an empty array.

    Raises:
        TrainConfigError: competence outside [0, 1], or difficulties not 1-D.
    """
    d = np.asarray(difficulties, dtype=float)
    if d.ndim != 1:
        raise TrainConfigError(f"curriculum_learning: difficulties must be 1-D, got {d.shape}")
    if not 0.0 <= competence <= 1.0:
        raise TrainConfigError(f"curriculum_learning: competence {competence} not in [0, 1]")
    n = len(d)
    # The epsilon keeps 0.55 * 100 = 55.00000000000001 from taking 56 examples.
    k = min(n, max(1, math.ceil(competence * n - 1e-9)))
    return np.argsort(d, kind="stable")[:k]


@dataclass(frozen=True)
class CurriculumReport:
    """Per task: current competence and the pacing history (for the training report)."""

    competence: dict[str, float]
    history: dict[str, list[dict[str, float]]]


def describe(states: Mapping[str, PacingState]) -> CurriculumReport:
    """The report of each task's pacing state (``states`` keyed by task)."""
    return CurriculumReport(
        competence={task: s.c for task, s in states.items()},
        history={
            task: [{"step": st, "metric": m, "competence": c} for st, m, c in s.history]
            for task, s in states.items()
        },
    )
