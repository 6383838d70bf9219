"""Feedback rows for reward training, from an export file, the live store or HH-RLHF data.

Three places feedback comes from, one result: :class:`~taskloop.rlhf.records.PreferencePair`
and :class:`~taskloop.rlhf.records.PointLabel` records.

export files
    JSON Lines (``.gz`` allowed) written by ``GET /v1/feedback/export`` (or
    :func:`taskloop.serve.storage.repo.export_feedback`) in any of its shapes. The shape is
    told per row by its keys, so one file may mix them: ``prompt`` + ``chosen`` +
    ``rejected`` is a pair (A-vs-B, or a score gap with its ``margin``), ``prompt`` +
    ``completion`` + ``label`` a thumb, ``prompt`` + ``completion`` + ``score`` a 1-5 score.
HH-RLHF files
    ``{"chosen": dialogue, "rejected": dialogue}`` rows (Anthropic's HH-RLHF layout). Each
    dialogue is split at its last ``"\\n\\nAssistant:"``: the prompt is everything up to
    and including that cue, the response what follows. A row whose two dialogues differ
    before the last cue, lack the cue, or end in the same response teaches nothing about
    the final answer: it is skipped and counted (public data sets hold a few such rows, and
    a user wants the rest trained on), and the count is logged as a warning with the first
    such ``file:line``. Rows that are not JSON objects, or lack keys, are errors.
the store
    :func:`from_store` reads the service's database with ``repo.export_feedback``.

:func:`select_source` keeps human, simulated or all rows (and scales simulated weights);
:func:`split_by_prompt` holds out whole prompts, so no prompt is on both sides.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from taskloop.log import logger, step
from taskloop.rlhf.errors import FeedbackDataError
from taskloop.rlhf.records import PointLabel, PreferencePair

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

HH_CUE = "\n\nAssistant:"
SOURCES = ("human", "simulated", "all")
SourceFilter = Literal["human", "simulated", "all"]
NO_FEEDBACK_HINT = (
    "rate some answers on the feedback page, or run `taskloop rlhf simulate`, then export "
    "them (GET /v1/feedback/export) or read the store (--from-store)"
)
_SHAPES_HINT = (
    "each line is a JSON object: {prompt, chosen, rejected} (pairs), {prompt, completion, "
    "label} (thumbs), {prompt, completion, score} (scores), as GET /v1/feedback/export "
    "writes, or {chosen, rejected} HH-RLHF dialogues"
)


class HasPrompt(Protocol):
    @property
    def prompt(self) -> str: ...


T = TypeVar("T", bound=HasPrompt)


@dataclass
class FeedbackRead:
    """What one file (or the store) gave: the rows, and what was skipped and why.

    ``skipped`` counts rows left out by reason (``hh_prompts_differ``, ``hh_no_cue``,
    ``same_response``); ``warnings`` says so in sentences naming the first ``file:line``.
    """

    pairs: list[PreferencePair] = field(default_factory=list)
    points: list[PointLabel] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> file:line


_SKIP_TEXT = {
    "hh_prompts_differ": "HH-RLHF rows whose chosen and rejected dialogues differ before "
    "the last Assistant turn",
    "hh_no_cue": "HH-RLHF rows without an '\\n\\nAssistant:' turn",
    "same_response": "pairs whose chosen and rejected answers are the same text",
}


# --- reading rows -----------------------------------------------------------------------


def _open_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a JSON Lines file, gzip-compressed or not."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise FeedbackDataError(
            f"cannot read feedback file {path}: {exc.strerror or exc}",
            hint="pass an existing export (GET /v1/feedback/export) or HH-RLHF .jsonl(.gz)",
        ) from None
    with raw:
        magic = raw.read(2)
        raw.seek(0)
        binary: Any = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        text = io.TextIOWrapper(binary, encoding="utf-8")
        try:
            yield from enumerate(text, start=1)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise FeedbackDataError(
                f"{path}: cannot be read as UTF-8 JSON Lines: {exc}",
                hint="pass the file as exported (plain or gzip-compressed JSON Lines)",
            ) from None


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = row[key]
    if not isinstance(value, str):
        raise FeedbackDataError(
            f"{where}: {key!r} must be text, got {type(value).__name__}", hint=_SHAPES_HINT
        )
    return value


def _number(row: Mapping[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = row.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FeedbackDataError(
            f"{where}: {key!r} must be a finite number, got {value!r}", hint=_SHAPES_HINT
        )
    return float(value)


def _common(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    """task, source and weight of an export row (defaults for rows made elsewhere)."""
    source = row.get("source", "human")
    if source not in ("human", "simulated"):
        raise FeedbackDataError(
            f"{where}: 'source' must be 'human' or 'simulated', got {source!r}",
            hint="fix the row, or drop the key (rows count as human by default)",
        )
    weight = _number(row, "weight", where, 1.0)
    if weight is None or weight < 0:
        raise FeedbackDataError(
            f"{where}: 'weight' must be a number >= 0, got {row.get('weight')!r}",
            hint="weights scale each row's share of the loss; 1.0 is the default",
        )
    task = row.get("task") or ""
    return {"task": str(task), "source": source, "weight": weight}


def split_dialogue(dialogue: str) -> tuple[str, str] | None:
    """An HH-RLHF dialogue as (prompt, response): the prompt runs up to and including the
    last ``"\\n\\nAssistant:"``, the response is the rest without leading whitespace.
    None when there is no such cue."""
    at = dialogue.rfind(HH_CUE)
    if at < 0:
        return None
    cut = at + len(HH_CUE)
    return dialogue[:cut], dialogue[cut:].lstrip()


def parse_row(
    row: Any, where: str, read: FeedbackRead, *, origin_default: str = "preference"
) -> None:
    """Add one row (any export shape, or an HH-RLHF dialogue pair) to ``read``.

    Raises:
        FeedbackDataError: not an object, an unknown shape, or a key of the wrong type;
            the message starts with ``where`` (``file:line``).
    """
    if not isinstance(row, dict):
        raise FeedbackDataError(
            f"{where}: a row must be a JSON object, got {type(row).__name__}", hint=_SHAPES_HINT
        )
    keys = set(row)
    if {"chosen", "rejected"} <= keys:
        if "prompt" in keys:
            prompt = _text(row, "prompt", where)
            chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
            origin = str(row.get("origin") or origin_default)
        else:
            chosen_split = split_dialogue(_text(row, "chosen", where))
            rejected_split = split_dialogue(_text(row, "rejected", where))
            if chosen_split is None or rejected_split is None:
                _skip(read, "hh_no_cue", where)
                return
            if chosen_split[0] != rejected_split[0]:
                _skip(read, "hh_prompts_differ", where)
                return
            prompt, chosen, rejected = chosen_split[0], chosen_split[1], rejected_split[1]
            origin = "dataset"
        if chosen == rejected:
            _skip(read, "same_response", where)
            return
        margin = _number(row, "margin", where, None)
        read.pairs.append(
            PreferencePair(
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                margin=margin,
                origin=origin,
                **_common(row, where),
            )
        )
        return
    if {"prompt", "completion"} <= keys and ("label" in keys or "score" in keys):
        label = row.get("label")
        if label is not None and not isinstance(label, bool):
            raise FeedbackDataError(
                f"{where}: 'label' must be true (thumbs up) or false, got {label!r}",
                hint=_SHAPES_HINT,
            )
        score = _number(row, "score", where, None)
        if score is not None and not 1 <= score <= 5:
            raise FeedbackDataError(
                f"{where}: 'score' must be between 1 and 5, got {score:g}",
                hint="scores are the feedback page's 1-5 ratings",
            )
        if label is None and score is None:
            raise FeedbackDataError(
                f"{where}: a rated answer needs a 'label' or a 'score', both are null",
                hint=_SHAPES_HINT,
            )
        read.points.append(
            PointLabel(
                prompt=_text(row, "prompt", where),
                completion=_text(row, "completion", where),
                label=label,
                score=score,
                **_common(row, where),
            )
        )
        return
    raise FeedbackDataError(
        f"{where}: a row with keys {sorted(keys)} is no feedback shape", hint=_SHAPES_HINT
    )


def _skip(read: FeedbackRead, reason: str, where: str) -> None:
    read.first_skipped.setdefault(reason, where)
    read.skipped[reason] += 1


def _finish(read: FeedbackRead) -> FeedbackRead:
    read.warnings = [
        f"{read.source}: skipped {n} {_SKIP_TEXT[reason]} (first at {read.first_skipped[reason]})"
        for reason, n in read.skipped.items()
    ]
    for warning in read.warnings:
        logger.warning(warning)
    return read


def load_feedback(path: str | Path) -> FeedbackRead:
    """Read an export or HH-RLHF file with what was skipped (see the module docstring).

    Raises:
        FeedbackDataError: the file cannot be read, a line is not JSON or has no feedback
            shape (the message names ``file:line``), or it holds no rows at all.
    """
    path = Path(path)
    read = FeedbackRead(source=str(path))
    with step("rlhf.read_feedback", path=str(path)) as info:
        for number, line in _open_lines(path):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FeedbackDataError(
                    f"{where}: not JSON ({exc.msg} at column {exc.colno})", hint=_SHAPES_HINT
                ) from None
            parse_row(row, where, read)
        info.update(pairs=len(read.pairs), points=len(read.points), skipped=read.skipped.total())
    if not read.pairs and not read.points and not read.skipped:
        raise FeedbackDataError(f"{path} holds no feedback rows", hint=NO_FEEDBACK_HINT)
    return _finish(read)


def read_feedback(path: str | Path) -> tuple[list[PreferencePair], list[PointLabel]]:
    """The pairs and rated answers of an export (any shape, ``.gz`` allowed) or an
    HH-RLHF ``{chosen, rejected}`` file; skipped HH rows are logged as a warning.

    Raises:
        FeedbackDataError: see :func:`load_feedback`.
    """
    read = load_feedback(path)
    return read.pairs, read.points


# --- the store ----------------------------------------------------------------------------


def store_feedback(database_url: str | None = None) -> FeedbackRead:
    """Every pair, thumb and score in the service's database, with what was skipped.

    Args:
        database_url: the database (None: the service's own, as ``taskloop serve`` uses:
            env TASKLOOP_SERVE_DATABASE_URL, else ``$TASKLOOP_HOME/serve.db``).

    Raises:
        FeedbackDataError: the SQLite file does not exist or the database has no taskloop
            tables.
        StorageError: the database cannot be reached.
    """
    from taskloop.serve.settings import ServeSettings
    from taskloop.serve.storage import (
        current_revision,
        make_engine,
        normalize_url,
        session_factory,
    )

    url = database_url or ServeSettings().resolved_database_url()
    parsed = normalize_url(url)
    shown = parsed.render_as_string(hide_password=True)
    database = parsed.database or ""
    in_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if in_file and not Path(database).expanduser().is_file():
        raise FeedbackDataError(
            f"no feedback database at {parsed.database}",
            hint="start `taskloop serve` and rate some answers, or pass --database-url",
        )
    if current_revision(url) is None:
        raise FeedbackDataError(
            f"database {shown} has no taskloop tables", hint="start `taskloop serve` once on it"
        )
    engine = make_engine(url)
    try:
        return read_session(session_factory(engine), shown)
    finally:
        engine.dispose()


def read_session(sessions: sessionmaker[Session], shown: str = "store") -> FeedbackRead:
    """Every pair, thumb and score of an open store (its session factory), as
    :func:`store_feedback` reads them; ``shown`` names the store in messages."""
    from taskloop.serve.storage import session_scope
    from taskloop.serve.storage.repo import EXPORT_SHAPES, export_feedback

    read = FeedbackRead(source=shown)
    with step("rlhf.store_feedback", database=shown) as info:
        with session_scope(sessions, readonly=True) as s:
            rows = {shape: list(export_feedback(s, shape)) for shape in EXPORT_SHAPES}
        for shape, shaped in rows.items():
            for i, row in enumerate(shaped, start=1):
                parse_row(row, f"{shown} ({shape} row {i})", read)
        info.update(pairs=len(read.pairs), points=len(read.points))
    return _finish(read)


def from_store(database_url: str | None = None) -> tuple[list[PreferencePair], list[PointLabel]]:
    """The pairs and rated answers in the service's database (None: its default one).

    Raises:
        FeedbackDataError, StorageError: see :func:`store_feedback`.
    """
    read = store_feedback(database_url)
    return read.pairs, read.points


# --- choosing and splitting ---------------------------------------------------------------


def select_source(
    pairs: Iterable[PreferencePair],
    points: Iterable[PointLabel],
    source: SourceFilter,
    simulated_weight: float = 1.0,
) -> tuple[list[PreferencePair], list[PointLabel]]:
    """Keep human, simulated or all rows; simulated rows kept get their weight times
    ``simulated_weight`` (so "all" with 0.5 counts a simulated rating half as much).

    Raises:
        FeedbackDataError: an unknown source, or a negative weight.
    """
    if source not in SOURCES:
        raise FeedbackDataError(f"unknown source {source!r}", hint="use human, simulated or all")
    if not math.isfinite(simulated_weight) or simulated_weight < 0:
        raise FeedbackDataError(
            f"simulated weight must be a number >= 0, got {simulated_weight}",
            hint="1.0 counts simulated ratings like human ones, 0.5 half as much",
        )

    def keep(row: PreferencePair | PointLabel) -> bool:
        return source == "all" or row.source == source

    def scaled(row: Any) -> Any:
        if row.source != "simulated" or simulated_weight == 1.0:
            return row
        return replace(row, weight=row.weight * simulated_weight)

    return [scaled(p) for p in pairs if keep(p)], [scaled(p) for p in points if keep(p)]


def split_by_prompt(
    items: Sequence[T], valid_fraction: float, seed: int
) -> tuple[list[T], list[T]]:
    """(train, valid): whole prompts go to one side, so no prompt is on both.

    Distinct prompts are shuffled with ``seed`` and moved to validation until it holds
    at least ``valid_fraction`` of the items; at least one prompt stays for training.
    Each side keeps the items' order. The same items and seed give the same split.

    Raises:
        FeedbackDataError: ``valid_fraction`` is not in [0, 1).
    """
    if not 0 <= valid_fraction < 1:
        raise FeedbackDataError(
            f"validation fraction must be in [0, 1), got {valid_fraction}",
            hint="0.1 holds out a tenth of the prompts' rows; 0 keeps all for training",
        )
    counts = Counter(item.prompt for item in items)
    order = sorted(counts)
    random.Random(seed).shuffle(order)
    target = valid_fraction * len(items)
    held: set[str] = set()
    taken = 0
    for prompt in order[:-1]:  # the last prompt always trains
        if taken >= target:
            break
        held.add(prompt)
        taken += counts[prompt]
    train = [item for item in items if item.prompt not in held]
    valid = [item for item in items if item.prompt in held]
    return train, valid
