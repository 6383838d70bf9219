"""Reads and writes of the service's data: plain functions taking a Session and speaking
the records of :mod:`taskloop.serve.records`.

Every write commits before it returns, so what a caller acknowledges (a 201 for a
rating, a ``prediction_id`` that can be rated next) is already durable; reads do not
commit. Expected failures raise :class:`ServeError` (what is wrong) or
:class:`NotFoundError` (what does not exist).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from itertools import combinations
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from taskloop.serve.errors import NotFoundError, ServeError
from taskloop.serve.records import (
    ClientRecord,
    FeedbackIn,
    FeedbackRecord,
    JobRecord,
    PredictionRecord,
    UserRecord,
)
from taskloop.serve.storage.tables import (
    ClientRow,
    FeedbackRow,
    JobRow,
    PredictionRow,
    QueueRow,
    UserRow,
    utcnow,
)

ExportShape = Literal["pairs", "thumbs", "scores"]
EXPORT_SHAPES: tuple[ExportShape, ...] = ("pairs", "thumbs", "scores")
# The fields each kind needs; the others' fields must be absent (a comment is always allowed).
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "thumbs": ("thumbs",),
    "score": ("score",),
    "comment": ("comment",),
    "preference": ("other_prediction_id", "preferred"),
}
_RATING_FIELDS = ("thumbs", "score", "other_prediction_id", "preferred")
# A rating with its prediction and, for a preference, the other prediction.
_Rated = tuple[FeedbackRow, PredictionRow, PredictionRow | None]


# --- inputs and predictions ---------------------------------------------------------


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal inputs, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_input(value: dict[str, Any]) -> str:
    """The ``input_hash`` of a prediction: sha256 hex of the input's canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def add_prediction(s: Session, rec: PredictionRecord) -> PredictionRecord:
    """Store a served prediction (``created`` now when unset) and commit.

    Raises:
        ServeError: a prediction with this id exists.
    """
    row = PredictionRow(**rec.model_dump(exclude={"created"}), created=rec.created or utcnow())
    _insert(s, row, rec.id, f"prediction {rec.id!r} exists", "prediction ids are fresh uuid4 hex")
    out = _prediction(row)
    s.commit()
    return out


def get_prediction(s: Session, prediction_id: str) -> PredictionRecord:
    """The stored prediction ``prediction_id``.

    Raises:
        NotFoundError: there is none.
    """
    return _prediction(_prediction_row(s, prediction_id))


def recent_predictions(s: Session, limit: int, task: str | None = None) -> list[PredictionRecord]:
    """The newest ``limit`` predictions (of ``task`` when given), newest first."""
    q = select(PredictionRow).order_by(PredictionRow.created.desc(), PredictionRow.id)
    if task is not None:
        q = q.where(PredictionRow.task == task)
    return [_prediction(r) for r in s.scalars(q.limit(max(0, limit)))]


def other_answer(s: Session, rec: PredictionRecord) -> PredictionRecord | None:
    """The newest other prediction of the same task for the same input (to rate A vs B)."""
    q = (
        select(PredictionRow)
        .where(
            PredictionRow.input_hash == rec.input_hash,
            PredictionRow.task == rec.task,
            PredictionRow.id != rec.id,
        )
        .order_by(PredictionRow.created.desc(), PredictionRow.id)
        .limit(1)
    )
    row = s.scalars(q).first()
    return None if row is None else _prediction(row)


def _prediction_row(s: Session, prediction_id: str, field: str = "prediction_id") -> PredictionRow:
    row = s.get(PredictionRow, prediction_id)
    if row is None:
        raise NotFoundError(
            f"{field}: prediction {prediction_id!r} not found",
            hint="rate a prediction_id that POST /v1/tasks/{task} returned",
        )
    return row


def _prediction(row: PredictionRow) -> PredictionRecord:
    return PredictionRecord.model_validate(row, from_attributes=True)


# --- feedback -----------------------------------------------------------------------


def add_feedback(s: Session, fb: FeedbackIn, rater: str) -> FeedbackRecord:
    """Store a rating by ``rater``, mark its predictions' queue items done (a person's
    rating only: a simulated one must not empty the queue that asks people), and commit.

    Returns only after the commit: the returned record is durable.

    Raises:
        ServeError: a field the kind needs is missing, or one of another kind is set, or
            a preference compares a prediction with itself or with another task's.
        NotFoundError: the prediction (or the other one of a preference) does not exist.
    """
    _check_fields(fb)
    first = _prediction_row(s, fb.prediction_id)
    rated = [fb.prediction_id]
    if fb.other_prediction_id is not None:
        other = _prediction_row(s, fb.other_prediction_id, "other_prediction_id")
        if other.id == first.id or other.task != first.task:
            raise ServeError(
                f"other_prediction_id: a preference compares two different predictions of "
                f"one task; got {first.id!r} ({first.task}) and {other.id!r} ({other.task})",
                hint="send answer A as prediction_id and answer B as other_prediction_id",
            )
        rated.append(other.id)
    row = FeedbackRow(**fb.model_dump(), rater=rater, created=utcnow())
    s.add(row)
    s.flush()
    if fb.source == "human":
        s.execute(
            update(QueueRow)
            .where(QueueRow.prediction_id.in_(rated), QueueRow.done.is_(False))
            .values(done=True)
        )
    out = FeedbackRecord(**fb.model_dump(), id=row.id, rater=rater, created=row.created)
    s.commit()
    return out


def _check_fields(fb: FeedbackIn) -> None:
    needed = _KIND_FIELDS[fb.kind]
    missing = [f for f in needed if getattr(fb, f) in (None, "")]
    foreign = [f for f in _RATING_FIELDS if f not in needed and getattr(fb, f) is not None]
    if missing or foreign:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"{', '.join(foreign)} not allowed"] if foreign else []
        raise ServeError(
            f"feedback of kind {fb.kind!r}: {'; '.join(problems)}",
            hint="thumbs needs thumbs (up/down); score needs score (1-5); comment needs "
            "comment; preference needs other_prediction_id and preferred (a/b/tie)",
        )


def feedback_counts(s: Session) -> dict[tuple[str, str], int]:
    """How many ratings of each (kind, value): ("thumbs", "up"), ("score", "4"),
    ("preference", "tie"), ("comment", "")."""
    q = select(
        FeedbackRow.kind,
        FeedbackRow.thumbs,
        FeedbackRow.score,
        FeedbackRow.preferred,
        func.count(),
    ).group_by(FeedbackRow.kind, FeedbackRow.thumbs, FeedbackRow.score, FeedbackRow.preferred)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for kind, thumbs, score, preferred, n in s.execute(q):
        value = thumbs or (str(score) if score is not None else None) or preferred or ""
        counts[(kind, value)] += n
    return dict(counts)


# --- export for reward training ------------------------------------------------------


def render_prompt(task: str, value: dict[str, Any]) -> str:
    """The text a task model reads for the input ``value`` (a task row), else its
    canonical JSON when it is not a valid row of a known task."""
    from pydantic import ValidationError

    from taskloop.data.pairs import model_input
    from taskloop.data.records import EXAMPLE_TYPES

    cls = EXAMPLE_TYPES.get(task)  # type: ignore[call-overload]
    if cls is not None:
        row = {**value, "id": str(value.get("id") or "input"), "where": {"file": "api", "row": 1}}
        try:
            return model_input(cls.model_validate(row))
        except (ValidationError, TypeError):
            pass
    return canonical_json(value)


def export_feedback(s: Session, shape: ExportShape) -> Iterator[dict[str, Any]]:
    """Ratings as reward-training rows, oldest first; reads everything now, so the
    iterator may be consumed after the session closed.

    pairs: {prompt, chosen, rejected, task, source, weight, feedback_id, margin,
    other_feedback_id, origin}: every preference that is not a tie (origin "preference",
    margin None), then, per input (same ``input_hash``), every two 1-5 scores of
    different predictions that differ (origin "score_gap", margin = the difference,
    feedback_id the higher's rating, source "simulated" when either is, weight the
    smaller). thumbs: {prompt, completion, label (up = true), task, source, weight,
    feedback_id}. scores: {prompt, completion, score, ...}. Predictions without an output
    give no rows.

    Raises:
        ServeError: an unknown shape.
    """
    if shape not in EXPORT_SHAPES:
        raise ServeError(f"unknown export shape {shape!r}", hint=f"one of {list(EXPORT_SHAPES)}")
    kinds = {"pairs": ("preference", "score"), "thumbs": ("thumbs",), "scores": ("score",)}
    a, b = aliased(PredictionRow), aliased(PredictionRow)
    q = (
        select(FeedbackRow, a, b)
        .join(a, FeedbackRow.prediction_id == a.id)
        .outerjoin(b, FeedbackRow.other_prediction_id == b.id)
        .where(FeedbackRow.kind.in_(kinds[shape]))
        .order_by(FeedbackRow.id)
    )
    rated: list[_Rated] = [(fb, pa, pb) for fb, pa, pb in s.execute(q)]
    prompts: dict[str, str] = {}

    def prompt(p: PredictionRow) -> str:
        if p.id not in prompts:
            prompts[p.id] = render_prompt(p.task, p.input)
        return prompts[p.id]

    if shape == "pairs":
        rows = _preference_pairs(rated, prompt) + _score_gap_pairs(rated, prompt)
    else:
        rows = [_single(fb, p, prompt, shape) for fb, p, _ in rated if p.output is not None]
    return iter(rows)


def _base(fb: FeedbackRow, p: PredictionRow) -> dict[str, Any]:
    return {"task": p.task, "source": fb.source, "weight": fb.weight, "feedback_id": fb.id}


def _single(fb: FeedbackRow, p: PredictionRow, prompt: Any, shape: str) -> dict[str, Any]:
    label = {"label": fb.thumbs == "up"} if shape == "thumbs" else {"score": fb.score}
    return {"prompt": prompt(p), "completion": p.output, **label, **_base(fb, p)}


def _preference_pairs(rated: list[_Rated], prompt: Any) -> list[dict[str, Any]]:
    out = []
    for fb, a, b in rated:
        if fb.kind != "preference" or b is None or fb.preferred not in ("a", "b"):
            continue  # a tie says neither is better: nothing to learn from
        chosen, rejected = (a, b) if fb.preferred == "a" else (b, a)
        if chosen.output is None or rejected.output is None:
            continue
        out.append(
            {"prompt": prompt(a), "chosen": chosen.output, "rejected": rejected.output}
            | _base(fb, a)
            | {"margin": None, "other_feedback_id": None, "origin": "preference"}
        )
    return out


def _score_gap_pairs(rated: list[_Rated], prompt: Any) -> list[dict[str, Any]]:
    Scored = tuple[int, FeedbackRow, PredictionRow]
    by_input: dict[tuple[str, str], list[Scored]] = defaultdict(list)
    for fb, p, _ in rated:
        if fb.kind == "score" and fb.score is not None and p.output is not None:
            by_input[(p.task, p.input_hash)].append((fb.score, fb, p))
    out = []
    for group in by_input.values():
        for one, two in combinations(group, 2):
            (hi, fh, ph), (lo, fl, pl) = (one, two) if one[0] > two[0] else (two, one)
            if ph.id == pl.id or hi == lo:
                continue
            out.append(
                {"prompt": prompt(ph), "chosen": ph.output, "rejected": pl.output}
                | _base(fh, ph)
                | {
                    "source": "simulated" if "simulated" in (fh.source, fl.source) else "human",
                    "weight": min(fh.weight, fl.weight),
                    "margin": hi - lo,
                    "other_feedback_id": fl.id,
                    "origin": "score_gap",
                }
            )
    return out


# --- users and clients ---------------------------------------------------------------


def _scopes_text(scopes: list[str]) -> str:
    bad = [sc for sc in scopes if not sc or sc.split() != [sc]]
    if bad:
        raise ServeError(f"bad scope names {bad!r}", hint="a scope is one word, like tasks:run")
    return " ".join(dict.fromkeys(scopes))


def _user(row: UserRow) -> UserRecord:
    return UserRecord(
        username=row.username, scopes=row.scopes.split(), disabled=row.disabled, created=row.created
    )


def create_user(s: Session, username: str, password_hash: str, scopes: list[str]) -> UserRecord:
    """Add a user and commit.

    Raises:
        ServeError: the user exists, or a scope name has spaces.
    """
    row = UserRow(
        username=username,
        password_hash=password_hash,
        scopes=_scopes_text(scopes),
        disabled=False,
        created=utcnow(),
    )
    _insert(s, row, username, f"user {username!r} exists", "pick another name, or change that user")
    out = _user(row)
    s.commit()
    return out


def get_user(s: Session, username: str) -> tuple[UserRecord, str] | None:
    """The user and their password hash, None when there is no such user."""
    row = s.get(UserRow, username)
    return None if row is None else (_user(row), row.password_hash)


def list_users(s: Session) -> list[UserRecord]:
    return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.username))]


def set_user(
    s: Session,
    username: str,
    *,
    password_hash: str | None = None,
    scopes: list[str] | None = None,
    disabled: bool | None = None,
) -> UserRecord:
    """Change what is given (None leaves a field) and commit.

    Raises:
        NotFoundError: no such user.
    """
    row = _existing(s, UserRow, username, "user")
    if password_hash is not None:
        row.password_hash = password_hash
    if scopes is not None:
        row.scopes = _scopes_text(scopes)
    if disabled is not None:
        row.disabled = disabled
    out = _user(row)
    s.commit()
    return out


def delete_user(s: Session, username: str) -> None:
    """Remove a user (their ratings stay, under their name) and commit.

    Raises:
        NotFoundError: no such user.
    """
    s.delete(_existing(s, UserRow, username, "user"))
    s.commit()


def _client(row: ClientRow) -> ClientRecord:
    return ClientRecord(
        client_id=row.client_id,
        scopes=row.scopes.split(),
        rate_per_minute=row.rate_per_minute,
        disabled=row.disabled,
        created=row.created,
    )


def create_client(
    s: Session,
    client_id: str,
    secret_hash: str,
    scopes: list[str],
    rate_per_minute: int | None = None,
) -> ClientRecord:
    """Add an OAuth2 client and commit.

    Raises:
        ServeError: the client exists, or a scope name has spaces.
    """
    row = ClientRow(
        client_id=client_id,
        secret_hash=secret_hash,
        scopes=_scopes_text(scopes),
        rate_per_minute=rate_per_minute,
        disabled=False,
        created=utcnow(),
    )
    _insert(
        s, row, client_id, f"client {client_id!r} exists", "pick another id, or delete it first"
    )
    out = _client(row)
    s.commit()
    return out


def get_client(s: Session, client_id: str) -> tuple[ClientRecord, str] | None:
    """The client and its secret hash, None when there is no such client."""
    row = s.get(ClientRow, client_id)
    return None if row is None else (_client(row), row.secret_hash)


def list_clients(s: Session) -> list[ClientRecord]:
    return [_client(r) for r in s.scalars(select(ClientRow).order_by(ClientRow.client_id))]


def set_client(
    s: Session,
    client_id: str,
    *,
    secret_hash: str | None = None,
    scopes: list[str] | None = None,
    rate_per_minute: int | None = None,
    disabled: bool | None = None,
) -> ClientRecord:
    """Change what is given (None leaves a field) and commit.

    Raises:
        NotFoundError: no such client.
    """
    row = _existing(s, ClientRow, client_id, "client")
    if secret_hash is not None:
        row.secret_hash = secret_hash
    if scopes is not None:
        row.scopes = _scopes_text(scopes)
    if rate_per_minute is not None:
        row.rate_per_minute = rate_per_minute
    if disabled is not None:
        row.disabled = disabled
    out = _client(row)
    s.commit()
    return out


def delete_client(s: Session, client_id: str) -> None:
    """Remove a client and commit.

    Raises:
        NotFoundError: no such client.
    """
    s.delete(_existing(s, ClientRow, client_id, "client"))
    s.commit()


# --- jobs ----------------------------------------------------------------------------


def _job(row: JobRow) -> JobRecord:
    return JobRecord.model_validate(row, from_attributes=True)


def create_job(s: Session, job_id: str, principal: str = "") -> JobRecord:
    """Add a queued job and commit.

    Raises:
        ServeError: a job with this id exists.
    """
    row = JobRow(id=job_id, status="queued", principal=principal, created=utcnow(), summary={})
    _insert(s, row, job_id, f"job {job_id!r} exists", "job ids are fresh uuid4 hex")
    out = _job(row)
    s.commit()
    return out


def update_job(
    s: Session,
    job_id: str,
    *,
    status: str | None = None,
    error: str | None = None,
    result: str | None = None,
    summary: dict[str, Any] | None = None,
) -> JobRecord:
    """Change what is given and commit; "done" or "failed" also sets ``finished``.

    Raises:
        NotFoundError: no such job.
        ServeError: an unknown status.
    """
    row = _existing(s, JobRow, job_id, "job")
    if status is not None:
        if status not in ("queued", "running", "done", "failed"):
            raise ServeError(f"job {job_id!r}: unknown status {status!r}")
        row.status = status
        if status in ("done", "failed") and row.finished is None:
            row.finished = utcnow()
    if error is not None:
        row.error = error
    if result is not None:
        row.result = result
    if summary is not None:
        row.summary = summary
    out = _job(row)
    s.commit()
    return out


def get_job(s: Session, job_id: str) -> JobRecord:
    """The job ``job_id``.

    Raises:
        NotFoundError: no such job.
    """
    return _job(_existing(s, JobRow, job_id, "job"))


# --- the labelling queue -------------------------------------------------------------


def add_queue_item(
    s: Session,
    *,
    task: str,
    input: dict[str, Any],
    priority: float = 0.0,
    reason: str = "",
    prediction_id: str | None = None,
) -> int:
    """Queue an input for a person to rate (higher ``priority`` first) and commit.

    Returns:
        The item's id.

    Raises:
        NotFoundError: ``prediction_id`` is given but not stored.
    """
    if prediction_id is not None:
        _prediction_row(s, prediction_id)
    row = QueueRow(
        prediction_id=prediction_id,
        task=task,
        input=input,
        priority=priority,
        reason=reason,
        created=utcnow(),
        done=False,
    )
    s.add(row)
    s.flush()
    item_id = row.id
    s.commit()
    return item_id


def queue_items(s: Session, limit: int) -> list[dict[str, Any]]:
    """Items not yet rated, highest priority first (then oldest): {id, prediction_id,
    task, input, priority, reason, created (ISO 8601)}."""
    q = (
        select(QueueRow)
        .where(QueueRow.done.is_(False))
        .order_by(QueueRow.priority.desc(), QueueRow.id)
        .limit(max(0, limit))
    )
    return [
        {
            "id": r.id,
            "prediction_id": r.prediction_id,
            "task": r.task,
            "input": r.input,
            "priority": r.priority,
            "reason": r.reason,
            "created": r.created.isoformat(),
        }
        for r in s.scalars(q)
    ]


def finish_queue_item(s: Session, item_id: int) -> None:
    """Mark a queue item done (rating one of its predictions does that too) and commit.

    Raises:
        NotFoundError: no such item.
    """
    _existing(s, QueueRow, item_id, "queue item").done = True
    s.commit()


# --- helpers -------------------------------------------------------------------------


def _existing(s: Session, table: Any, key: Any, what: str) -> Any:
    row = s.get(table, key)
    if row is None:
        raise NotFoundError(f"{what} {key!r} not found", hint=f"list the {what}s that exist")
    return row


def _insert(s: Session, row: Any, key: Any, conflict: str, hint: str) -> None:
    """Add ``row`` and flush; an existing key (or a writer racing us to it) is a ServeError."""
    if s.get(type(row), key) is not None:
        raise ServeError(conflict, hint=hint)
    s.add(row)
    try:
        s.flush()
    except IntegrityError as e:
        s.rollback()
        raise ServeError(conflict, hint=hint) from e
