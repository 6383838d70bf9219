"""Retraining triggers: rules over what the service saw that say "retrain now".

Reads top to bottom:

1. The rules (:class:`TriggerRules`, loadable from YAML/JSON with unknown keys refused)
   and their defaults.
2. The typed input of the rules (:class:`LoopStats`) and their output
   (:class:`TriggerResult`): :func:`retraining_triggers` is pure, records in and results
   out, so every rule is tested on scripted numbers.
3. The retraining state (:class:`RetrainState`): when the last retraining ran and the
   champion's probe metric then and since, one JSON file per model under
   ``$TASKLOOP_HOME/retrain/``.
4. :func:`collect_stats`: the store's queries (predictions and feedback tables) and the
   state turned into a :class:`LoopStats`, with the drift p-value of recent inputs
   against a reference when one is given.

The rules, each one enabled or not in the rules file:

- ``thumbs_down``: share of thumbs-down among the newest ``window`` human thumbs ratings
  (since the last retraining) above ``max_rate``, once at least ``min_count`` exist.
- ``verification``: share of the newest ``window`` stored predictions (since the last
  retraining, skipped ones left out) whose checks flagged them or that failed, above
  ``max_rate``, once at least ``min_count`` exist.
- ``metric_decay``: the champion's primary metric on the probe set now is more than
  ``max_drop`` points (0-100 scale) below the baseline recorded at the last retraining.
- ``metric_series``: the recorded probe metrics end in ``consecutive_drops`` drops in a
  row (``metric_series.drops``), or the newest is below ``floor`` (``metric_series.floor``).
- ``drift``: the smallest Bonferroni-corrected p-value of
  :func:`taskloop.monitor.drift.detect_drift` (reference vs recent inputs) below ``alpha``.
- ``volume``: at least ``min_new`` new ratings since the last retraining.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskloop.log import step
from taskloop.rlhf.errors import RetrainError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from taskloop.monitor.drift import DriftReport, Embedder

# A prediction with one of these statuses failed its verification (flagged: an answer
# whose error checks failed; failed: no answer, the model or sandbox broke).
FAILED_STATUSES = ("flagged", "failed")
HISTORY_LIMIT = 1000  # probe measurements kept in the state file


# ------------------------------------------------------------------------------ rules


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True


class ThumbsDownRule(_Rule):
    """Thumbs-down share of the newest human thumbs ratings since the last retraining."""

    window: int = Field(200, ge=1, description="newest human thumbs ratings looked at")
    min_count: int = Field(20, ge=1, description="fewer ratings than this never fire")
    max_rate: float = Field(0.3, ge=0, le=1, description="fires when the share is above it")


class VerificationRule(_Rule):
    """Share of flagged or failed predictions among the newest since the last retraining."""

    window: int = Field(500, ge=1, description="newest stored predictions looked at")
    min_count: int = Field(50, ge=1, description="fewer predictions than this never fire")
    max_rate: float = Field(0.2, ge=0, le=1, description="fires when the share is above it")


class MetricDecayRule(_Rule):
    """The champion's probe metric now against the baseline of the last retraining."""

    max_drop: float = Field(2.0, ge=0, description="points (0-100) the metric may lose")


class MetricSeriesRule(_Rule):
    """The recorded probe metrics: a run of drops, or a value below a floor."""

    consecutive_drops: int | None = Field(
        3, ge=1, description="fires after this many drops in a row (null: off)"
    )
    min_step: float = Field(0.0, ge=0, description="a drop must exceed this many points")
    floor: float | None = Field(None, description="fires when the newest value is below it")


class DriftRule(_Rule):
    """Recent inputs against reference inputs (MMD and KS tests, Bonferroni-corrected)."""

    alpha: float = Field(0.05, gt=0, lt=1, description="fires when the smallest p is below it")
    min_inputs: int = Field(20, ge=2, description="fewer recent inputs than this never fire")


class VolumeRule(_Rule):
    """New ratings since the last retraining."""

    min_new: int = Field(1000, ge=1, description="fires at this many new ratings")
    include_simulated: bool = Field(False, description="count simulated ratings too")


class TriggerRules(BaseModel):
    """Every retraining rule; a rules file sets any part of it (unknown keys fail)."""

    model_config = ConfigDict(extra="forbid")

    thumbs_down: ThumbsDownRule = Field(default_factory=ThumbsDownRule)
    verification: VerificationRule = Field(default_factory=VerificationRule)
    metric_decay: MetricDecayRule = Field(default_factory=MetricDecayRule)
    metric_series: MetricSeriesRule = Field(default_factory=MetricSeriesRule)
    drift: DriftRule = Field(default_factory=DriftRule)
    volume: VolumeRule = Field(default_factory=VolumeRule)

    def window(self) -> int:
        """Rows :func:`collect_stats` must read so that every enabled rule sees its window."""
        return max(self.thumbs_down.window, self.verification.window, 1)


def load_rules(path: str | Path | None) -> TriggerRules:
    """The rules of a YAML or JSON file (None: the defaults).

    Raises:
        RetrainError: the file is unreadable, not a mapping, or has an unknown key or a
            bad value (the message names the file and the dotted key).
    """
    if path is None:
        return TriggerRules()
    from taskloop.config import read_yaml
    from taskloop.data.errors import validated

    data = read_yaml(path, RetrainError)  # YAML reads JSON too
    return validated(
        TriggerRules,
        data,
        error=RetrainError,
        where=f"rules {path}: ",
        hint="see docs/retraining.md for every rule and key; unknown keys are refused",
    )


# --------------------------------------------------------------------- stats and results


@dataclass(frozen=True)
class LoopStats:
    """What the rules look at, collected by :func:`collect_stats` (or scripted in tests).

    Sequences are newest first; a rule looks at the first ``window`` of them.
    """

    thumbs_down: tuple[bool, ...] = ()  # human thumbs ratings: True = down
    statuses: tuple[str, ...] = ()  # stored predictions' statuses (skipped left out)
    probe_metric: float | None = None  # the champion's primary probe metric, newest
    baseline_metric: float | None = None  # ... recorded at the last retraining
    metric_series: tuple[float, ...] = ()  # recorded probe metrics, OLDEST first
    metric: str | None = None  # the name of that metric (bleu, rougeL, f1, pass@1)
    drift_p: float | None = None  # smallest corrected p-value of the drift check
    drift_inputs: int = 0  # recent inputs the drift check compared
    drift_tests: int = 0
    new_human: int = 0  # ratings since the last retraining, by source
    new_simulated: int = 0
    since: datetime | None = None  # the last retraining (None: never)
    collected: datetime | None = None


@dataclass(frozen=True)
class TriggerResult:
    """One rule's verdict: whether it fired, on what value against which threshold."""

    name: str
    fired: bool
    value: float | None
    threshold: float | None
    detail: str


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def thumbs_down_rule(stats: LoopStats, rule: ThumbsDownRule) -> TriggerResult:
    """Fires when thumbs-down / ratings over the newest ``rule.window`` ratings exceeds
    ``rule.max_rate`` and there are at least ``rule.min_count`` of them."""
    recent = stats.thumbs_down[: rule.window]
    n, down = len(recent), sum(recent)
    if n < rule.min_count:
        return TriggerResult(
            "thumbs_down", False, down / n if n else None, rule.max_rate,
            f"{n} human thumbs ratings since the last retraining; needs at least "
            f"{rule.min_count}",
        )  # fmt: skip
    rate = down / n
    fired = rate > rule.max_rate
    return TriggerResult(
        "thumbs_down", fired, rate, rule.max_rate,
        f"{down} of the newest {n} human thumbs ratings are down ({_pct(rate)}, limit "
        f"{_pct(rule.max_rate)})",
    )  # fmt: skip


def verification_rule(stats: LoopStats, rule: VerificationRule) -> TriggerResult:
    """Fires when the flagged-or-failed share of the newest ``rule.window`` predictions
    exceeds ``rule.max_rate`` and there are at least ``rule.min_count`` of them."""
    recent = stats.statuses[: rule.window]
    n = len(recent)
    bad = sum(s in FAILED_STATUSES for s in recent)
    if n < rule.min_count:
        return TriggerResult(
            "verification", False, bad / n if n else None, rule.max_rate,
            f"{n} predictions since the last retraining; needs at least {rule.min_count}",
        )  # fmt: skip
    rate = bad / n
    return TriggerResult(
        "verification", rate > rule.max_rate, rate, rule.max_rate,
        f"{bad} of the newest {n} predictions flagged or failed ({_pct(rate)}, limit "
        f"{_pct(rule.max_rate)})",
    )  # fmt: skip


def metric_decay_rule(stats: LoopStats, rule: MetricDecayRule) -> TriggerResult:
    """Fires when baseline - current probe metric exceeds ``rule.max_drop`` points."""
    name = stats.metric or "primary metric"
    if stats.probe_metric is None or stats.baseline_metric is None:
        missing = "no probe measurement" if stats.probe_metric is None else "no baseline"
        return TriggerResult(
            "metric_decay", False, None, rule.max_drop,
            f"not measured: {missing} yet (a retraining records the baseline; "
            "`taskloop retrain check --probe` measures the champion now)",
        )  # fmt: skip
    drop = stats.baseline_metric - stats.probe_metric
    return TriggerResult(
        "metric_decay", drop > rule.max_drop, drop, rule.max_drop,
        f"{name} on the probe: {stats.probe_metric:.2f} now, {stats.baseline_metric:.2f} at the "
        f"last retraining (drop {drop:+.2f} points, limit {rule.max_drop:g})",
    )  # fmt: skip


def consecutive_drops(series: Sequence[float], min_step: float = 0.0) -> int:
    """How many drops in a row (each larger than ``min_step``) end ``series`` (oldest first).

    ``[50, 48, 49, 47, 46, 44]`` ends in 3 drops (49 → 47 → 46 → 44).
    """
    count = 0
    for i in range(len(series) - 1, 0, -1):
        if series[i - 1] - series[i] > min_step:
            count += 1
        else:
            break
    return count


def metric_series_rules(stats: LoopStats, rule: MetricSeriesRule) -> list[TriggerResult]:
    """``metric_series.drops`` (when ``consecutive_drops`` is set) and
    ``metric_series.floor`` (when ``floor`` is set)."""
    series = stats.metric_series
    name = stats.metric or "primary metric"
    out: list[TriggerResult] = []
    if rule.consecutive_drops is not None:
        k = rule.consecutive_drops
        drops = consecutive_drops(series, rule.min_step)
        tail = ", ".join(f"{v:.2f}" for v in series[-(k + 1) :])
        detail = (
            f"{name} on the probe fell {drops} time(s) in a row (fires at {k}); newest: {tail}"
            if len(series) > k
            else f"{len(series)} probe measurement(s) recorded; {k} drops need {k + 1}"
        )
        out.append(TriggerResult("metric_series.drops", drops >= k, float(drops), float(k), detail))
    if rule.floor is not None:
        if not series:
            out.append(
                TriggerResult(
                    "metric_series.floor", False, None, rule.floor, "no probe measurement yet"
                )
            )
        else:
            last = series[-1]
            detail = f"{name} on the probe is {last:.2f} (floor {rule.floor:g})"
            out.append(
                TriggerResult("metric_series.floor", last < rule.floor, last, rule.floor, detail)
            )
    return out


def drift_rule(stats: LoopStats, rule: DriftRule) -> TriggerResult:
    """Fires when the drift check's smallest corrected p-value is below ``rule.alpha``
    (with at least ``rule.min_inputs`` recent inputs)."""
    if stats.drift_p is None:
        return TriggerResult(
            "drift", False, None, rule.alpha,
            "not measured: no reference inputs given (--reference) or too few recent inputs",
        )  # fmt: skip
    if stats.drift_inputs < rule.min_inputs:
        return TriggerResult(
            "drift", False, stats.drift_p, rule.alpha,
            f"{stats.drift_inputs} recent inputs; needs at least {rule.min_inputs}",
        )  # fmt: skip
    fired = stats.drift_p < rule.alpha
    return TriggerResult(
        "drift", fired, stats.drift_p, rule.alpha,
        f"smallest corrected p-value {stats.drift_p:.3g} over {stats.drift_tests} tests of "
        f"{stats.drift_inputs} recent inputs (alpha {rule.alpha:g})",
    )  # fmt: skip


def volume_rule(stats: LoopStats, rule: VolumeRule) -> TriggerResult:
    """Fires when at least ``rule.min_new`` ratings arrived since the last retraining."""
    new = stats.new_human + (stats.new_simulated if rule.include_simulated else 0)
    what = "ratings" if rule.include_simulated else "human ratings"
    since = (
        stats.since.isoformat(timespec="seconds") if stats.since else "the start (never retrained)"
    )
    return TriggerResult(
        "volume", new >= rule.min_new, float(new), float(rule.min_new),
        f"{new} new {what} since {since} (fires at {rule.min_new})",
    )  # fmt: skip


def retraining_triggers(stats: LoopStats, rules: TriggerRules | None = None) -> list[TriggerResult]:
    """Every enabled rule's verdict on ``stats``, in the rules' order.

    Pure: no store, no clock, no files. A rule that lacks its data (too few ratings, no
    probe measurement, no reference inputs) does not fire and says why in ``detail``.

    Args:
        stats: what the service saw (:func:`collect_stats`, or scripted).
        rules: the rules (default: :class:`TriggerRules` with its defaults).

    Returns:
        One result per enabled rule (two for ``metric_series`` when both of its checks
        are set); retrain when any ``fired``.
    """
    r = rules or TriggerRules()
    out: list[TriggerResult] = []
    if r.thumbs_down.enabled:
        out.append(thumbs_down_rule(stats, r.thumbs_down))
    if r.verification.enabled:
        out.append(verification_rule(stats, r.verification))
    if r.metric_decay.enabled:
        out.append(metric_decay_rule(stats, r.metric_decay))
    if r.metric_series.enabled:
        out.extend(metric_series_rules(stats, r.metric_series))
    if r.drift.enabled:
        out.append(drift_rule(stats, r.drift))
    if r.volume.enabled:
        out.append(volume_rule(stats, r.volume))
    return out


def fired(results: Sequence[TriggerResult]) -> list[str]:
    """Names of the rules that fired."""
    return [r.name for r in results if r.fired]


def results_json(results: Sequence[TriggerResult]) -> list[dict[str, Any]]:
    """The results as JSON-ready dicts."""
    return [asdict(r) for r in results]


# ------------------------------------------------------------------- retraining state


class ProbePoint(BaseModel):
    """One measurement of the champion on the probe set."""

    time: datetime
    value: float
    metric: str | None = None
    version: int | None = None  # the champion's registered version, when known
    source: str = "check"  # check (taskloop retrain check --probe) or retrain (the gate)


class RetrainState(BaseModel):
    """What the loop remembers between runs, per registered model."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    last_run: datetime | None = None  # the last retraining (job + gate)
    metric: str | None = None
    baseline: float | None = None  # the champion's probe metric after the last retraining
    last_decision: str | None = None  # promoted / kept
    history: list[ProbePoint] = Field(default_factory=list)  # oldest first


def _slug(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name) or "_"


def state_path(name: str | None = None) -> Path:
    """``$TASKLOOP_HOME/retrain/<name>.json`` (``state.json`` without a name)."""
    from taskloop.config import taskloop_home

    file = f"{_slug(name)}.json" if name else "state.json"
    return taskloop_home() / "retrain" / file


def load_state(path: str | Path) -> RetrainState:
    """The state in ``path`` (an empty state when the file does not exist yet).

    Raises:
        RetrainError: the file is not a valid state (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        return RetrainState()
    try:
        return RetrainState.model_validate_json(p.read_text(encoding="utf-8"))
    except (OSError, ValidationError, UnicodeDecodeError) as exc:
        raise RetrainError(
            f"retraining state {p}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            hint="fix or delete the file; the next retraining writes a new one",
        ) from None


def save_state(state: RetrainState, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a crash leaves the old file or the new)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    trimmed = state.model_copy(update={"history": state.history[-HISTORY_LIMIT:]})
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}-", dir=p.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(trimmed.model_dump_json(indent=2))
    Path(tmp).replace(p)
    return p


def record_probe(
    path: str | Path,
    value: float,
    *,
    metric: str | None = None,
    version: int | None = None,
    source: str = "check",
    when: datetime | None = None,
) -> RetrainState:
    """Append one probe measurement to the state in ``path`` and save it."""
    state = load_state(path)
    point = ProbePoint(
        time=when or datetime.now(UTC), value=value, metric=metric, version=version, source=source
    )
    state = state.model_copy(
        update={"history": [*state.history, point], "metric": metric or state.metric}
    )
    save_state(state, path)
    return state


# ---------------------------------------------------------------------- the store


def _recent_thumbs(
    s: Session, *, limit: int, since: datetime | None, task: str | None
) -> tuple[bool, ...]:
    from sqlalchemy import select

    from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

    q = (
        select(FeedbackRow.thumbs)
        .join(PredictionRow, FeedbackRow.prediction_id == PredictionRow.id)
        .where(FeedbackRow.kind == "thumbs", FeedbackRow.source == "human")
    )
    if since is not None:
        q = q.where(FeedbackRow.created > since)
    if task is not None:
        q = q.where(PredictionRow.task == task)
    q = q.order_by(FeedbackRow.created.desc(), FeedbackRow.id.desc()).limit(max(0, limit))
    return tuple(t == "down" for t in s.scalars(q))


def _recent_statuses(
    s: Session, *, limit: int, since: datetime | None, task: str | None
) -> tuple[str, ...]:
    from sqlalchemy import select

    from taskloop.serve.storage.tables import PredictionRow

    # A skipped prediction had no model to answer: nothing was verified.
    q = select(PredictionRow.status).where(PredictionRow.status != "skipped")
    if since is not None:
        q = q.where(PredictionRow.created > since)
    if task is not None:
        q = q.where(PredictionRow.task == task)
    q = q.order_by(PredictionRow.created.desc(), PredictionRow.id.desc()).limit(max(0, limit))
    return tuple(s.scalars(q))


def _new_feedback(s: Session, *, since: datetime | None, task: str | None) -> dict[str, int]:
    from sqlalchemy import func, select

    from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

    q = select(FeedbackRow.source, func.count()).join(
        PredictionRow, FeedbackRow.prediction_id == PredictionRow.id
    )
    # A comment is not a rating: only thumbs, scores and preferences count.
    q = q.where(FeedbackRow.kind != "comment")
    if since is not None:
        q = q.where(FeedbackRow.created > since)
    if task is not None:
        q = q.where(PredictionRow.task == task)
    return {str(src): int(n) for src, n in s.execute(q.group_by(FeedbackRow.source))}


def recent_inputs(
    s: Session, *, limit: int, task: str | None = None, field: str | None = None
) -> list[str]:
    """The texts of the newest ``limit`` stored predictions' inputs (per task: translate
    source, summarize document, qa question, codegen prompt; or ``field``)."""
    from sqlalchemy import select

    from taskloop.monitor.drift import DEFAULT_FIELD
    from taskloop.serve.storage.tables import PredictionRow

    q = select(PredictionRow.task, PredictionRow.input)
    if task is not None:
        q = q.where(PredictionRow.task == task)
    q = q.order_by(PredictionRow.created.desc(), PredictionRow.id.desc()).limit(max(0, limit))
    out: list[str] = []
    for t, row in s.execute(q):
        value = row.get(field or DEFAULT_FIELD.get(t, "text")) if isinstance(row, dict) else None
        if isinstance(value, str) and value.strip():
            out.append(value)
    return out


def drift_p_value(
    reference: Sequence[str],
    recent: Sequence[str],
    *,
    mmd: bool = False,
    encoder: Embedder | None = None,
    seed: int = 0,
) -> tuple[float, DriftReport]:
    """(smallest Bonferroni-corrected p-value, the report) of :func:`detect_drift`."""
    from taskloop.monitor.drift import detect_drift

    report = detect_drift(
        reference, recent, encoder=encoder, mmd=mmd, seed=seed,
        compared="reference vs recent served inputs",
    )  # fmt: skip
    return min(report.p_values().values()), report


@dataclass
class StatsOptions:
    """How :func:`collect_stats` reads drift (kept apart: most callers leave it alone)."""

    reference: Sequence[str] | None = None  # reference inputs; None: no drift check
    drift_inputs: int = 200  # newest inputs compared with the reference
    input_field: str | None = None  # input field compared (default per task)
    mmd: bool = False  # embedding MMD test too (loads the sentence encoder)
    encoder: Embedder | None = None
    seed: int = 0


def collect_stats(
    sessions: sessionmaker[Session],
    *,
    window: int = 1000,
    since: datetime | None = None,
    task: str | None = None,
    state: RetrainState | None = None,
    drift: StatsOptions | None = None,
    now: datetime | None = None,
) -> LoopStats:
    """What the rules need, from the service's store and the retraining state.

    Args:
        sessions: the store's session factory (``session_factory(make_engine(url))``).
        window: newest ratings and predictions read (a rule looks at its own window of
            them; :meth:`TriggerRules.window` is enough for all).
        since: only ratings and predictions after this time count (default: the state's
            last retraining; None and no state: everything).
        task: only this task's predictions and their ratings (None: all tasks).
        state: the retraining state (last run, baseline and recorded probe metrics).
        drift: reference inputs for the drift rule (None: drift not measured).
        now: the collection time written on the stats.
    """
    from taskloop.serve.storage.db import session_scope

    st = state or RetrainState()
    since = since if since is not None else st.last_run
    drift_p: float | None = None
    drift_n = drift_tests = 0
    with step("retrain.collect_stats", window=window, task=task) as info:
        with session_scope(sessions, readonly=True) as s:
            thumbs = _recent_thumbs(s, limit=window, since=since, task=task)
            statuses = _recent_statuses(s, limit=window, since=since, task=task)
            new = _new_feedback(s, since=since, task=task)
            recent = (
                recent_inputs(s, limit=drift.drift_inputs, task=task, field=drift.input_field)
                if drift is not None and drift.reference is not None
                else []
            )
        if drift is not None and drift.reference is not None and len(recent) >= 2:
            drift_p, report = drift_p_value(
                drift.reference, recent, mmd=drift.mmd, encoder=drift.encoder, seed=drift.seed
            )
            drift_n, drift_tests = len(recent), report.tests
        info.update(ratings=len(thumbs), predictions=len(statuses), drift_p=drift_p)
    series = tuple(p.value for p in st.history)
    return LoopStats(
        thumbs_down=thumbs,
        statuses=statuses,
        probe_metric=series[-1] if series else None,
        baseline_metric=st.baseline,
        metric_series=series,
        metric=st.metric,
        drift_p=drift_p,
        drift_inputs=drift_n,
        drift_tests=drift_tests,
        new_human=new.get("human", 0),
        new_simulated=sum(n for src, n in new.items() if src != "human"),
        since=since,
        collected=now or datetime.now(UTC),
    )


def stats_json(stats: LoopStats) -> dict[str, Any]:
    """A short JSON-ready summary of ``stats`` (counts, not the sequences)."""
    return {
        "ratings": len(stats.thumbs_down),
        "thumbs_down": sum(stats.thumbs_down),
        "predictions": len(stats.statuses),
        "flagged_or_failed": sum(s in FAILED_STATUSES for s in stats.statuses),
        "probe_metric": stats.probe_metric,
        "baseline_metric": stats.baseline_metric,
        "metric": stats.metric,
        "metric_series": list(stats.metric_series[-20:]),
        "drift_p": stats.drift_p,
        "drift_inputs": stats.drift_inputs,
        "new_human": stats.new_human,
        "new_simulated": stats.new_simulated,
        "since": stats.since.isoformat() if stats.since else None,
        "collected": stats.collected.isoformat() if stats.collected else None,
    }


def dumps(value: Any) -> str:
    """JSON text of results or stats (datetimes as ISO 8601)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)
