"""``taskloop rlhf queue``: put the inputs most worth a person's rating into the labelling
queue that the feedback page shows first (thin: the work is :mod:`taskloop.rlhf.active`)."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import handle_errors, progress_bars
from taskloop.rlhf.errors import ActiveLearningError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from taskloop.rlhf.active import Candidate, RewardScorer, Selected, Strategy


def parse_weights(values: Sequence[str]) -> dict[str, float]:
    """``["drift=0.5", "uncertainty=2"]`` as {signal: weight}.

    Raises:
        ActiveLearningError: not NAME=NUMBER, or an unknown signal.
    """
    from taskloop.cliutil import parse_weights as parse
    from taskloop.rlhf.active import check_weights

    out = parse(values, option="--weight", error=ActiveLearningError)
    check_weights(out)
    return out


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) of a JSON Lines file (.gz allowed), blank lines skipped.

    Raises:
        ActiveLearningError: the file is missing, or a line is not a JSON object.
    """
    if not path.is_file():
        raise ActiveLearningError(
            f"{path}: no such file", hint="--data takes a JSON Lines file of task rows"
        )
    opener = gzip.open if path.name.endswith(".gz") else open
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for line, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ActiveLearningError(
                        f"{path}:{line}: not JSON ({e.msg} at column {e.colno})",
                        hint="one JSON object per line",
                    ) from e
                if not isinstance(row, dict):
                    raise ActiveLearningError(
                        f"{path}:{line}: a JSON {type(row).__name__}, not an object",
                        hint='one task row per line, e.g. {"task": "qa", "question": ...}',
                    )
                rows.append((line, row))
    except (OSError, UnicodeDecodeError) as e:
        raise ActiveLearningError(f"{path}: cannot read ({e})", hint="save it as UTF-8") from e
    return rows


@contextmanager
def _store(url: str, dry_run: bool) -> Iterator[Session | None]:
    """A session on the service database; a dry run does not migrate, and gets None when
    the database is not at the newest schema (nothing can be queued there yet)."""
    from taskloop.serve.storage.db import (
        current_revision,
        head_revision,
        make_engine,
        session_factory,
        session_scope,
        upgrade,
    )

    if dry_run:
        if current_revision(url) != head_revision():
            yield None
            return
    else:
        upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _reward_models(names: Sequence[str], device: str) -> list[RewardScorer]:
    if not names:
        return []
    try:
        from taskloop.rlhf.reward import load_reward_model
    except ImportError as e:
        raise ActiveLearningError(
            "--reward-model needs taskloop.rlhf.reward, which this installation lacks",
            hint="update taskloop, or leave --reward-model out (drift and stored confidence "
            "still apply)",
        ) from e
    return [load_reward_model(name, device=device) for name in names]


def _preview(text: str, width: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def _print_table(
    selected: Sequence[Selected], ids: Sequence[int | None], texts: dict[str, str], title: str
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    table = Table(title=title)
    for col in ("#", "queue id", "task", "candidate", "priority", "why", "input"):
        table.add_column(col, justify="right" if col in ("#", "queue id", "priority") else "left")
    for n, (item, qid) in enumerate(zip(selected, ids, strict=True), start=1):
        table.add_row(
            str(n),
            "-" if qid is None else str(qid),
            item.task,
            item.candidate_id[:16],
            f"{item.priority:.3f}",
            item.reason or "-",
            _preview(texts.get(item.candidate_id, "")),
        )
    console.print(table, soft_wrap=False)


@handle_errors
def queue_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The service database (default: the one `taskloop serve` uses, "
            "TASKLOOP_SERVE_DATABASE_URL or the embedded SQLite file).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Candidates from a JSON Lines file of task rows (.gz allowed) instead of "
            'the stored predictions; a row may carry its answer ("output"), several '
            '("outputs") and a "confidence".',
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            metavar="TASK",
            help="Only this task's stored predictions; with --data, the task of rows that "
            "name none.",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Consider the newest N unrated predictions."),
    ] = 500,
    reward_model: Annotated[
        list[str] | None,
        typer.Option(
            "--reward-model",
            metavar="NAME",
            help="A reward model (folder or registry name) for the uncertainty signals; "
            "repeat it for ensemble disagreement.",
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Reference inputs for the drift signal (anything `taskloop drift` reads: "
            "task files, a .txt with one input per line, JSON Lines with a text field).",
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            metavar="PATH", help="Sentence encoder for drift (default: the packaged MiniLM)."
        ),
    ] = None,
    neighbours: Annotated[
        int, typer.Option(min=1, metavar="K", help="Nearest reference inputs drift averages.")
    ] = 5,
    k: Annotated[int, typer.Option("--k", min=0, metavar="N", help="How many to queue.")] = 20,
    strategy: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="combined: the weighted mean of every signal that applies; uncertainty: "
            "the reward model's uncertainty only (needs --reward-model); random: a seeded "
            "random sample (the baseline).",
        ),
    ] = "combined",
    weight: Annotated[
        list[str] | None,
        typer.Option(
            "--weight",
            metavar="NAME=W",
            help="Weight of a signal in the priority (default 1 each): uncertainty, "
            "pair_uncertainty, disagreement, answer_disagreement, low_confidence, drift. "
            "Repeat it; 0 turns a signal off.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --strategy random.")] = 0,
    keep_duplicates: Annotated[
        bool,
        typer.Option(
            "--keep-duplicates",
            help="Queue several answers to one input (default: the most urgent one).",
        ),
    ] = False,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps.")] = (
        "auto"
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be queued; write nothing.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Queue the inputs most worth a person's rating, most urgent first.

    Reads the candidates: stored predictions no person has rated (thumbs, score or A-vs-B)
    from the service database, or task rows from --data. Scores each with the signals that
    apply: the reward model's uncertainty (--reward-model), disagreement between reward
    models or between answers to one input, low confidence the task stored, and distance
    from --reference inputs. Writes the top --k to the labelling queue (priority and
    reason), skipping inputs already queued and not yet rated, and prints what was queued
    and why. The feedback page and GET /v1/feedback/queue show these first.
    docs/active-learning.md explains the signals.
    """
    from taskloop.rlhf import active
    from taskloop.serve.settings import ServeSettings

    if strategy not in active.STRATEGIES:
        raise ActiveLearningError(
            f"--strategy {strategy!r} is not known", hint=f"one of {', '.join(active.STRATEGIES)}"
        )
    chosen: Strategy = strategy
    if chosen == "uncertainty" and not reward_model:
        raise ActiveLearningError(
            "--strategy uncertainty needs a reward model",
            hint="pass --reward-model NAME, or use --strategy combined",
        )
    weights = parse_weights(weight or [])
    url = database_url or ServeSettings().resolved_database_url()
    with _store(url, dry_run) as session:
        if data is not None:
            candidates = active.from_rows(read_rows(data), task=task, source=str(data))
        elif session is None:
            raise ActiveLearningError(
                f"the database at {url} has no predictions yet (not at the newest schema)",
                hint="serve some answers first (`taskloop serve`), or pass --data FILE",
            )
        else:
            stored = active.unrated_predictions(session, task=task, limit=limit)
            candidates = active.from_predictions(stored)
        queued = active.open_queue_keys(session) if session is not None else set()
        fresh = [c for c in candidates if c.key not in queued]
        with progress_bars(not json_out):
            scored = _score(fresh, reward_model or [], reference, encoder, neighbours, device)
        selected = active.select(
            scored, k, strategy=chosen, seed=seed, weights=weights, dedupe=not keep_duplicates
        )
        ids: list[int | None] = [None] * len(selected)
        if not dry_run and session is not None and selected:
            ids = list(_enqueue_in_order(session, selected))
    _report(selected, ids, fresh, len(candidates), dry_run, chosen, json_out)


def _score(
    candidates: list[Candidate],
    reward_models: Sequence[str],
    reference: Path | None,
    encoder: str | None,
    neighbours: int,
    device: str,
) -> list[Candidate]:
    from taskloop.rlhf.active import candidate_signals

    if not candidates:
        return []
    models = _reward_models(reward_models, device)
    texts = None
    embedder = None
    if reference is not None:
        from taskloop.models.encoder import load_encoder
        from taskloop.monitor.drift import load_texts

        texts = load_texts(reference).texts
        embedder = load_encoder(encoder, device=device)
    return candidate_signals(
        candidates,
        reward_models=models,
        reference=texts,
        embedder=embedder,
        k_neighbours=neighbours,
    )


def _enqueue_in_order(session: Session, selected: Sequence[Selected]) -> list[int | None]:
    """Queue ids aligned with ``selected`` (None where the input was already queued)."""
    from taskloop.rlhf.active import enqueue

    out: list[int | None] = []
    for item in selected:
        got = enqueue(session, [item])
        out.append(got[0] if got else None)
    return out


def _report(
    selected: Sequence[Selected],
    ids: Sequence[int | None],
    candidates: Sequence[Candidate],
    total: int,
    dry_run: bool,
    strategy: str,
    json_out: bool,
) -> None:
    texts = {c.id: c.text or c.prompt for c in candidates}
    skipped = total - len(candidates)
    if json_out:
        payload = {
            "strategy": strategy,
            "dry_run": dry_run,
            "candidates": total,
            "already_queued": skipped,
            "selected": [
                {
                    "queue_id": qid,
                    "candidate_id": s.candidate_id,
                    "prediction_id": s.prediction_id,
                    "task": s.task,
                    "priority": s.priority,
                    "reason": s.reason,
                    "signals": dict(s.signals),
                    "input": s.input,
                }
                for s, qid in zip(selected, ids, strict=True)
            ],
        }
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        return
    if not selected:
        typer.echo(f"nothing to queue: {total} candidates, {skipped} of them already queued")
        return
    what = "would queue" if dry_run else "queued"
    title = (
        f"taskloop rlhf queue ({strategy}): {what} {len(selected)} of {len(candidates)} candidates"
    )
    _print_table(selected, ids, texts, title)
    if skipped:
        typer.echo(f"{skipped} candidates were already queued and not yet rated: left out")
    if dry_run:
        typer.echo("dry run: nothing written")
