"""The options by which ``taskloop rlhf reward`` and ``taskloop rlhf dpo`` read ratings
(``--data``, ``--from-store``, ``--database-url``, ``--source``, ``--simulated-weight``)
and the one function that turns them into rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from taskloop.rlhf.errors import RLHFError
from taskloop.rlhf.feedback import (
    NO_FEEDBACK_HINT,
    SOURCES,
    FeedbackRead,
    load_feedback,
    select_source,
    store_feedback,
)
from taskloop.rlhf.records import PointLabel, PreferencePair

FeedbackFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--data",
        metavar="FILE",
        help="Feedback file (repeatable): a GET /v1/feedback/export JSONL of any shape "
        "(pairs, thumbs, scores) or HH-RLHF {chosen, rejected} JSONL; .gz allowed.",
    ),
]
FromStore = Annotated[
    bool, typer.Option("--from-store", help="Also read every rating in the service's database.")
]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="The database of --from-store (default: the service's, "
        "TASKLOOP_SERVE_DATABASE_URL or $TASKLOOP_HOME/serve.db).",
    ),
]
Source = Annotated[
    str,
    typer.Option(
        metavar="human|simulated|all",
        help="Which ratings to learn from: people's, the heuristic checks', or both.",
    ),
]
SimulatedWeight = Annotated[
    float,
    typer.Option(
        min=0.0, help="Multiplies the weight of simulated ratings (0.5 counts them half)."
    ),
]


@dataclass
class Ratings:
    """What the options read: each file's (and the store's) read, and the rows kept."""

    reads: list[FeedbackRead] = field(default_factory=list)
    pairs: list[PreferencePair] = field(default_factory=list)
    points: list[PointLabel] = field(default_factory=list)


def read_ratings(
    data: list[Path] | None,
    from_store: bool,
    database_url: str | None,
    source: str,
    simulated_weight: float,
    *,
    error: type[RLHFError] = RLHFError,
) -> Ratings:
    """The rows of ``--data`` files and/or the store, of ``--source``.

    Raises:
        error: neither files nor the store, --database-url without --from-store, or an
            unknown --source.
        FeedbackDataError: a file or the store cannot be read (names file:line).
    """
    if source not in SOURCES:
        raise error(f"unknown --source {source!r}", hint="use human, simulated or all")
    if not data and not from_store:
        raise error(
            "no ratings to learn from: give --data FILE and/or --from-store",
            hint=NO_FEEDBACK_HINT,
        )
    if database_url and not from_store:
        raise error("--database-url is for --from-store", hint="add --from-store")
    reads = [load_feedback(path) for path in data or []]
    if from_store:
        reads.append(store_feedback(database_url))
    pairs, points = select_source(
        [p for r in reads for p in r.pairs],
        [p for r in reads for p in r.points],
        source,  # type: ignore[arg-type]  # checked above
        simulated_weight,
    )
    return Ratings(reads, pairs, points)
