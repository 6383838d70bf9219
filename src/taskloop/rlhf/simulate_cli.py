"""``taskloop rlhf simulate``: rate the service's stored answers with heuristic checks.

Reads the predictions in the service's database that have no simulated rating yet,
scores each with :mod:`taskloop.rlhf.simulate` (tests, glossary, factual support,
language, format, length, reference metric) and writes a 1-5 rating with
``source="simulated"`` (rater ``simulator``) per prediction, plus simulated A-vs-B
preferences between answers to the same input. Prints per task how many were rated, the
score distribution, the thumbs-up share, the pairs written and how often each scorer
applied. docs/simulated-feedback.md explains the scorers and the mapping.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskloop.cliutil import handle_errors, progress_bars
from taskloop.errors import InputFileError
from taskloop.rlhf.errors import RLHFError

if TYPE_CHECKING:
    from taskloop.rlhf.simulate_store import SimulateSummary

EMPTY_HINT = (
    "serve and ask some questions first: `taskloop serve`, then POST task rows to "
    "/v1/tasks/{task} (or use the feedback page); or pass --database-url of the "
    "service's database"
)


def parse_weights(values: list[str]) -> dict[str, float]:
    """``["tests=2", "length=0"]`` merged onto the default weights.

    Raises:
        RLHFError: not NAME=NUMBER, an unknown scorer, or a negative weight.
    """
    from taskloop.cliutil import parse_weights as parse
    from taskloop.rlhf.simulate import DEFAULT_WEIGHTS, SCORERS

    return DEFAULT_WEIGHTS | parse(values, option="--weight", known=SCORERS, error=RLHFError)


def summary_table(summary: SimulateSummary) -> None:
    """Print one row per task: rated, scores 1-5, thumbs up, pairs, scorers applied."""
    from rich.console import Console
    from rich.table import Table

    from taskloop.rlhf.simulate import SCORERS

    console = Console() if sys.stdout.isatty() else Console(width=160)
    title = "taskloop rlhf simulate" + (" (dry run: nothing written)" if summary.dry_run else "")
    table = Table(title=title)
    for col in ("task", "rated", "skipped", "1", "2", "3", "4", "5", "thumbs up", "pairs"):
        table.add_column(col, justify="left" if col == "task" else "right")
    table.add_column("scorers applied", justify="left")
    for name in sorted(summary.tasks):
        t = summary.tasks[name]
        share = t.thumbs_up_share
        applied = ", ".join(f"{n} {t.applied[n]}" for n in SCORERS if t.applied[n])
        table.add_row(
            name,
            str(t.rated),
            str(t.skipped),
            *(str(t.distribution[k]) for k in range(1, 6)),
            "-" if share is None else f"{share:.0%}",
            str(t.pairs),
            applied or "-",
        )
    console.print(table, soft_wrap=False)


def write_jsonl(path: Path, summary: SimulateSummary) -> None:
    """The ratings, then the pairs, one JSON object a line.

    Raises:
        InputFileError: the file cannot be written.
    """
    rows = [r.to_dict() for r in summary.ratings] + [p.to_dict() for p in summary.pairs]
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputFileError(
            f"{path}: cannot write the ratings: {exc}", hint="pass --out a writable path"
        ) from None


@handle_errors
def simulate_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="The service's database. Default: $TASKLOOP_SERVE_DATABASE_URL, else "
            "sqlite:///$TASKLOOP_HOME/serve.db.",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            metavar="TASK", help="Rate only this task: codegen, qa, summarize, translate."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Rate at most N predictions (oldest first)."),
    ] = None,
    redo: Annotated[
        bool,
        typer.Option(
            "--redo",
            help="Rate predictions that already have a simulated rating again, replacing "
            "the simulator's earlier ratings of them (people's ratings stay).",
        ),
    ] = False,
    pairs: Annotated[
        bool,
        typer.Option(
            "--pairs/--no-pairs",
            help="Also write simulated A-vs-B preferences between answers to one input.",
        ),
    ] = True,
    min_gap: Annotated[
        int,
        typer.Option(
            min=1, max=4, metavar="N", help="A pair needs simulated scores N or more apart."
        ),
    ] = 1,
    weight: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            metavar="NAME=W",
            help="Weight of a scorer in the rating (repeatable; defaults: tests=3, "
            "glossary=2, factual=2, language=2, reference=2, format=1, length=1; 0 ignores "
            "one).",
        ),
    ] = None,
    glossary: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="A glossary (source<TAB>target per line) for the glossary scorer of translations.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Score and print; write nothing to the database.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Also write the ratings and pairs as JSON Lines to FILE."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
    ] = False,
) -> None:
    """Rate stored answers with heuristic checks and store the ratings as feedback.

    Reads the predictions in the service's database (migrated to the newest schema
    first) that have no simulated rating yet, scores each one (unit tests in the sandbox,
    glossary terms, numbers and names against the source, target language, format,
    length, the reference metric when the input has a reference) and writes a 1-5
    rating per prediction with source "simulated", rater "simulator", the rating's
    confidence as weight and the low scorers as comment; with pairs, also A-vs-B
    preferences between answers to the same input. People's ratings are never changed;
    reward training keeps the two apart or mixes them by their source. --dry-run writes
    no rating (the database is still migrated when it is behind).
    """
    from taskloop.data.records import TASKS
    from taskloop.rlhf.simulate_store import simulate_store
    from taskloop.serve.settings import ServeSettings
    from taskloop.serve.storage import make_engine, session_factory, upgrade
    from taskloop.serve.storage.db import normalize_url

    if task is not None and task not in TASKS:
        raise RLHFError(f"--task {task!r} is not a task", hint=f"use one of {', '.join(TASKS)}")
    weights = parse_weights(weight or [])
    terms = None
    if glossary is not None:
        from taskloop.tasks.glossary import load_glossary

        terms = load_glossary(glossary)
    url = database_url or ServeSettings().resolved_database_url()
    upgrade(url)
    engine = make_engine(url)
    try:
        with progress_bars(not json_out):
            summary = simulate_store(
                session_factory(engine),
                limit=limit,
                task=task,
                redo=redo,
                pairs=pairs,
                min_gap=min_gap,
                weights=weights,
                glossary=terms,
                dry_run=dry_run,
            )
    finally:
        engine.dispose()
    where = normalize_url(url).render_as_string(hide_password=True)
    if summary.stored == 0:
        raise RLHFError(
            f"no stored predictions in {where}" + (f" for task {task}" if task else ""),
            hint=EMPTY_HINT,
        )
    if out is not None:
        write_jsonl(out, summary)
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    if not summary.ratings and not summary.skipped:
        typer.echo(
            f"nothing to rate: all {summary.stored} stored predictions"
            + (f" of {task}" if task else "")
            + " already have a simulated rating (--redo rates them again)"
        )
        return
    summary_table(summary)
    verb = "would write" if dry_run else "wrote"
    typer.echo(
        f"{verb} {len(summary.ratings)} simulated rating(s) and {len(summary.pairs)} "
        f"preference(s) (source=simulated, rater=simulator) "
        + ("(dry run: nothing written)" if dry_run else f"to {where}")
    )
    if summary.skipped:
        first_id, why = summary.skipped[0]
        typer.echo(
            f"skipped {len(summary.skipped)} prediction(s) whose stored input is not a valid "
            f"task row (first: {first_id}: {why})",
            err=True,
        )
