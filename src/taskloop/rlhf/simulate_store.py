"""Simulated ratings into the service's feedback store.

:func:`simulate_store` reads the stored predictions that have no simulated rating yet,
rebuilds each example from its stored input, scores it with the heuristic scorers of
:mod:`taskloop.rlhf.simulate` (stored checks passed in) and writes a 1-5 rating
(``source="simulated"``, rater ``simulator``, the rating's confidence as weight), plus
A-vs-B preferences between differently rated answers to one input. People's ratings are
never touched; reward training keeps the two apart or mixes them by ``source``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any, Literal

from taskloop import progress
from taskloop.data.records import Check, Example, Where
from taskloop.log import logger, step
from taskloop.rlhf.errors import RLHFError
from taskloop.rlhf.simulate import (
    SCORERS,
    SIMULATOR,
    SimulatedRating,
    score_outputs,
    simulated_rating,
    wanted_scorers,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

DEFAULT_CHUNK = 64  # predictions scored (and written) per batch


@dataclass(frozen=True)
class RatedPrediction:
    """A stored prediction and its simulated rating (``feedback_id`` once written)."""

    prediction_id: str
    task: str
    input_hash: str
    rating: SimulatedRating
    feedback_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        r = self.rating
        return {
            "kind": "score",
            "prediction_id": self.prediction_id,
            "task": self.task,
            "input_hash": self.input_hash,
            "score": r.score,
            "thumbs": r.thumbs,
            "weight": r.weight,
            "value": r.value,
            "scores": r.scores,
            "reasons": r.reasons,
            "comment": r.comment(),
            "source": "simulated",
            "rater": SIMULATOR,
            "feedback_id": self.feedback_id,
        }


@dataclass(frozen=True)
class SimulatedPair:
    """A simulated preference between two answers to one input (A is the older)."""

    prediction_id: str
    other_prediction_id: str
    task: str
    preferred: Literal["a", "b"]
    scores: tuple[int, int]
    weight: float
    feedback_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "preference",
            "prediction_id": self.prediction_id,
            "other_prediction_id": self.other_prediction_id,
            "task": self.task,
            "preferred": self.preferred,
            "scores": list(self.scores),
            "weight": self.weight,
            "source": "simulated",
            "rater": SIMULATOR,
            "feedback_id": self.feedback_id,
        }


@dataclass
class TaskTally:
    """What one run did for one task."""

    task: str
    rated: int = 0
    skipped: int = 0
    distribution: dict[int, int] = field(default_factory=lambda: dict.fromkeys(range(1, 6), 0))
    thumbs_up: int = 0
    pairs: int = 0
    applied: Counter[str] = field(default_factory=Counter)

    @property
    def thumbs_up_share(self) -> float | None:
        return self.thumbs_up / self.rated if self.rated else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "rated": self.rated,
            "skipped": self.skipped,
            "distribution": {str(k): v for k, v in self.distribution.items()},
            "thumbs_up_share": self.thumbs_up_share,
            "pairs": self.pairs,
            "applied": {n: self.applied[n] for n in SCORERS if self.applied[n]},
        }


@dataclass
class SimulateSummary:
    """The outcome of :func:`simulate_store`.

    ``stored`` counts the predictions with an output in the store (of ``task`` when
    given), rated or not; ``skipped`` lists (prediction id, why) for stored inputs that
    are no longer valid task rows.
    """

    stored: int
    dry_run: bool
    ratings: list[RatedPrediction] = field(default_factory=list)
    pairs: list[SimulatedPair] = field(default_factory=list)
    tasks: dict[str, TaskTally] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def tally(self, task: str) -> TaskTally:
        if task not in self.tasks:
            self.tasks[task] = TaskTally(task)
        return self.tasks[task]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "dry_run": self.dry_run,
            "rated": len(self.ratings),
            "pairs": len(self.pairs),
            "skipped": [{"prediction_id": p, "reason": r} for p, r in self.skipped],
            "tasks": [self.tasks[t].to_dict() for t in sorted(self.tasks)],
        }


@dataclass(frozen=True)
class _Stored:
    """A stored prediction, read out of its session."""

    id: str
    task: str
    input_hash: str
    input: dict[str, Any]
    output: str
    checks: list[dict[str, Any]]


def _select(
    s: Session, *, task: str | None, redo: bool, limit: int | None
) -> tuple[int, list[_Stored]]:
    """(predictions with an output, those to rate): oldest first; without ``redo`` only
    those with no simulated score yet."""
    from sqlalchemy import func, select

    from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

    base = select(PredictionRow).where(PredictionRow.output.is_not(None))
    if task is not None:
        base = base.where(PredictionRow.task == task)
    stored = s.scalar(select(func.count()).select_from(base.subquery())) or 0
    q = base.order_by(PredictionRow.created, PredictionRow.id)
    if not redo:
        simulated = select(FeedbackRow.prediction_id).where(
            FeedbackRow.source == "simulated", FeedbackRow.kind == "score"
        )
        q = q.where(PredictionRow.id.not_in(simulated))
    if limit is not None:
        q = q.limit(max(0, limit))
    rows = [
        _Stored(r.id, r.task, r.input_hash, dict(r.input), r.output or "", list(r.checks or []))
        for r in s.scalars(q)
    ]
    return stored, rows


def _example(row: _Stored) -> tuple[Example | None, str]:
    """The task example a stored input was (as the service parsed it), or why not."""
    from taskloop.data.loader import validate_row
    from taskloop.data.records import TASKS

    if row.task not in TASKS:
        return None, f"unknown task {row.task!r}"
    example, error = validate_row(row.task, dict(row.input), Where(file="prediction", row=1))
    if example is None:
        return None, f"stored input is not a valid {row.task} row: {error}"
    return example, ""


def _checks(raw: list[dict[str, Any]]) -> list[Check]:
    from pydantic import ValidationError

    out = []
    for c in raw:
        try:
            out.append(Check.model_validate(c))
        except ValidationError:
            continue  # a check stored by another version; the scorers can rerun it
    return out


def _write_rating(
    sessions: sessionmaker[Session], rated: RatedPrediction, redo: bool
) -> RatedPrediction:
    """Store one simulated score (replacing the simulator's earlier ones on ``redo``) in
    one transaction."""
    from sqlalchemy import delete, or_

    from taskloop.serve.records import FeedbackIn
    from taskloop.serve.storage import repo, session_scope
    from taskloop.serve.storage.tables import FeedbackRow

    pid = rated.prediction_id
    fb = FeedbackIn(
        prediction_id=pid,
        kind="score",
        score=rated.rating.score,
        comment=rated.rating.comment()[:4000],
        source="simulated",
        weight=rated.rating.weight,
    )
    with session_scope(sessions) as s:
        if redo:
            s.execute(
                delete(FeedbackRow).where(
                    FeedbackRow.source == "simulated",
                    FeedbackRow.rater == SIMULATOR,
                    or_(FeedbackRow.prediction_id == pid, FeedbackRow.other_prediction_id == pid),
                )
            )
        record = repo.add_feedback(s, fb, SIMULATOR)  # commits the delete and the rating
    return RatedPrediction(pid, rated.task, rated.input_hash, rated.rating, record.id)


def _write_pair(sessions: sessionmaker[Session], pair: SimulatedPair) -> SimulatedPair:
    from dataclasses import replace

    from taskloop.serve.records import FeedbackIn
    from taskloop.serve.storage import repo, session_scope

    fb = FeedbackIn(
        prediction_id=pair.prediction_id,
        kind="preference",
        other_prediction_id=pair.other_prediction_id,
        preferred=pair.preferred,
        comment=f"simulated: A {pair.scores[0]}/5 vs B {pair.scores[1]}/5",
        source="simulated",
        weight=pair.weight,
    )
    with session_scope(sessions) as s:
        record = repo.add_feedback(s, fb, SIMULATOR)
    return replace(pair, feedback_id=record.id)


@dataclass(frozen=True)
class _Scored:
    """A prediction's simulated score, for pairing."""

    id: str
    task: str
    input_hash: str
    output: str
    order: tuple[Any, str]  # (created, id): A is the older of a pair
    score: int
    weight: float


def _pair_candidates(
    sessions: sessionmaker[Session], rated: Sequence[RatedPrediction]
) -> tuple[list[list[_Scored]], set[frozenset[str]]]:
    """Per (task, input) with a newly rated prediction: every prediction with a simulated
    score (this run's overriding stored ones), and the simulated preferences that exist."""
    from sqlalchemy import select

    from taskloop.serve.storage import session_scope
    from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

    new = {r.prediction_id: r for r in rated}
    hashes = sorted({r.input_hash for r in rated})
    groups: dict[tuple[str, str], dict[str, _Scored]] = {}
    existing: set[frozenset[str]] = set()
    with session_scope(sessions, readonly=True) as s:
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            preds = {
                p.id: p
                for p in s.scalars(
                    select(PredictionRow).where(
                        PredictionRow.input_hash.in_(chunk), PredictionRow.output.is_not(None)
                    )
                )
            }
            fbs = s.scalars(
                select(FeedbackRow)
                .where(
                    FeedbackRow.prediction_id.in_(list(preds)),
                    FeedbackRow.source == "simulated",
                    FeedbackRow.kind.in_(("score", "preference")),
                )
                .order_by(FeedbackRow.id)
            )
            stored_scores: dict[str, FeedbackRow] = {}
            for fb in fbs:
                if fb.kind == "score" and fb.score is not None:
                    stored_scores[fb.prediction_id] = fb  # the newest wins
                elif fb.kind == "preference" and fb.other_prediction_id is not None:
                    existing.add(frozenset((fb.prediction_id, fb.other_prediction_id)))
            for pid, p in preds.items():
                if pid in new:
                    score, weight = new[pid].rating.score, new[pid].rating.weight
                elif pid in stored_scores:
                    score, weight = stored_scores[pid].score or 3, stored_scores[pid].weight
                else:
                    continue
                groups.setdefault((p.task, p.input_hash), {})[pid] = _Scored(
                    pid, p.task, p.input_hash, p.output or "", (p.created, pid), score, weight
                )
    return [list(g.values()) for g in groups.values() if len(g) >= 2], existing


def _pairs(
    groups: list[list[_Scored]], existing: set[frozenset[str]], min_gap: int
) -> list[SimulatedPair]:
    """A preference for every two answers to one input whose scores differ by ``min_gap``
    or more, unless one exists or the two answers are the same text."""
    out = []
    for group in groups:
        for a, b in combinations(sorted(group, key=lambda x: x.order), 2):
            if abs(a.score - b.score) < min_gap or a.output == b.output:
                continue
            if frozenset((a.id, b.id)) in existing:
                continue
            out.append(
                SimulatedPair(
                    prediction_id=a.id,
                    other_prediction_id=b.id,
                    task=a.task,
                    preferred="a" if a.score > b.score else "b",
                    scores=(a.score, b.score),
                    weight=round(min(a.weight, b.weight), 4),
                )
            )
    return out


def simulate_store(
    sessions: sessionmaker[Session],
    *,
    limit: int | None = None,
    task: str | None = None,
    redo: bool = False,
    pairs: bool = True,
    min_gap: int = 1,
    weights: Mapping[str, float] | None = None,
    glossary: Mapping[str, str] | None = None,
    dry_run: bool = False,
    workers: int | None = None,
) -> SimulateSummary:
    """Rate stored predictions with the scorers and write the ratings as feedback.

    Reads the predictions with an output (of ``task``; oldest first; at most ``limit``)
    that have no simulated score yet (all of them with ``redo``, which replaces the
    simulator's earlier ratings of them), rebuilds each example from the stored input,
    scores it (the stored checks stand in for rerunning code), and writes a
    ``kind="score"`` rating with ``source="simulated"``, the rating's confidence as
    ``weight`` and its reasons as ``comment``, rater ``simulator``, each committed on its
    own. With ``pairs``, every two answers to one input (same task and ``input_hash``)
    whose simulated scores differ by ``min_gap`` or more also get a simulated preference.
    Ratings by people are never read or changed. ``dry_run`` scores and writes nothing.

    Args:
        sessions: sessions on the service's (migrated) database.
        weights: scorer weights of the rating (default :data:`DEFAULT_WEIGHTS`).
        glossary: source term -> target term for translations.
        workers: sandbox runs at a time for code without stored test results.

    Raises:
        RLHFError: ``min_gap`` outside 1-4 or an unknown scorer in ``weights``.
        StorageError: the database failed.
    """
    from taskloop.serve.storage import session_scope

    if not 1 <= min_gap <= 4:
        raise RLHFError(
            f"min_gap must be 1-4 (score points), got {min_gap}", hint="e.g. --min-gap 2"
        )
    if weights is not None:
        wanted_scorers(weights)
    with session_scope(sessions, readonly=True) as s:
        stored, rows = _select(s, task=task, redo=redo, limit=limit)
    summary = SimulateSummary(stored=stored, dry_run=dry_run)
    progress.start("simulate", len(rows), "items")
    with step("simulate.rate", predictions=len(rows), dry_run=dry_run) as info:
        for start in range(0, len(rows), DEFAULT_CHUNK):
            _rate_chunk(
                sessions, rows[start : start + DEFAULT_CHUNK], summary, weights, glossary, redo,
                workers,
            )  # fmt: skip
        info.update(rated=len(summary.ratings), skipped=len(summary.skipped))
    if pairs and summary.ratings:
        with step("simulate.pairs") as info:
            groups, existing = _pair_candidates(sessions, summary.ratings)
            for pair in _pairs(groups, existing, min_gap):
                written = pair if dry_run else _write_pair(sessions, pair)
                summary.pairs.append(written)
                summary.tally(pair.task).pairs += 1
            info.update(pairs=len(summary.pairs))
    return summary


def _rate_chunk(
    sessions: sessionmaker[Session],
    rows: Sequence[_Stored],
    summary: SimulateSummary,
    weights: Mapping[str, float] | None,
    glossary: Mapping[str, str] | None,
    redo: bool,
    workers: int | None,
) -> None:
    """Score one chunk of stored predictions and write their ratings."""
    ready: list[tuple[_Stored, Example]] = []
    for row in rows:
        example, why = _example(row)
        if example is None:
            summary.skipped.append((row.id, why))
            summary.tally(row.task).skipped += 1
            logger.info("simulate: skipped prediction %s: %s", row.id, why)
            progress.advance(1)
        else:
            ready.append((row, example))
    scores = score_outputs(
        [ex for _, ex in ready],
        [row.output for row, _ in ready],
        glossary=glossary,
        checks=[_checks(row.checks) for row, _ in ready],
        workers=workers,
    )
    for (row, _), values in zip(ready, scores, strict=True):
        rated = RatedPrediction(row.id, row.task, row.input_hash, simulated_rating(values, weights))
        if not summary.dry_run:
            rated = _write_rating(sessions, rated, redo)
        summary.ratings.append(rated)
        tally = summary.tally(row.task)
        tally.rated += 1
        tally.distribution[rated.rating.score] += 1
        tally.thumbs_up += rated.rating.thumbs == "up"
        tally.applied.update(values.keys())
        progress.advance(1)
