"""``taskloop rlhf reward``: train a reward model from feedback.

Reads feedback rows from export files (``GET /v1/feedback/export``, any shape) or HH-RLHF
``{chosen, rejected}`` files (``--data``, repeatable) and/or the service's database
(``--from-store``), keeps human, simulated or all rows, and trains a one-logit sequence
classifier on them (:func:`taskloop.rlhf.reward.train_reward_model`). Writes the model
folder, metrics.json, history.jsonl, reliability.png and reward_config.json under
``--out`` and prints the held-out metrics. docs/reward-model.md explains the losses and
how to read the figures.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskloop.cliutil import handle_errors, progress_bars
from taskloop.rlhf.feedback_cli import (
    FeedbackFiles,
    FromStore,
    SimulatedWeight,
    Source,
    StoreUrl,
    read_ratings,
)

if TYPE_CHECKING:
    from taskloop.rlhf.feedback import FeedbackRead
    from taskloop.rlhf.reward import RewardResult

# (metric key, label, format) in the order the table shows them.
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("pair_accuracy", "held-out pair accuracy", "{:.3f}"),
    ("mean_reward_gap", "mean reward gap (chosen - rejected)", "{:.3f}"),
    ("ece", "ECE of σ(gap) (lower is better)", "{:.3f}"),
    ("brier", "Brier score of σ(gap) (lower is better)", "{:.3f}"),
    ("thumbs_auc", "thumbs AUC", "{:.3f}"),
    ("thumbs_accuracy", "thumbs accuracy (σ(r) >= 0.5 = up)", "{:.3f}"),
    ("threshold", "accept threshold (reward.accept)", "{:.4g}"),
    ("accept_precision", "accept precision (held out)", "{:.3f}"),
    ("accept_recall", "accept recall (held out)", "{:.3f}"),
    ("train_pairs", "training pairs", "{:.0f}"),
    ("train_points", "training rated answers", "{:.0f}"),
    ("valid_pairs", "held-out pairs", "{:.0f}"),
    ("valid_points", "held-out rated answers", "{:.0f}"),
    ("train_seconds", "training seconds", "{:.1f}"),
    ("examples_per_second", "examples/s", "{:.1f}"),
)


def _default_out() -> Path:
    from taskloop.config import taskloop_home

    return taskloop_home() / "reward" / datetime.now().strftime("%Y%m%d-%H%M%S")


def table_rows(result: RewardResult) -> list[tuple[str, str]]:
    """(label, value) per metric the run measured, in the table's order; pair accuracy
    carries its 95% bootstrap interval."""
    rows = []
    m = result.metrics
    for key, label, fmt in TABLE_ROWS:
        if key not in m:
            continue
        value = fmt.format(m[key])
        if key == "pair_accuracy" and "pair_accuracy_low" in m:
            value += f" [{m['pair_accuracy_low']:.3f}, {m['pair_accuracy_high']:.3f}]"
        rows.append((label, value))
    return rows


def _print(result: RewardResult, reads: list[FeedbackRead]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title="taskloop rlhf reward: held-out metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for row in table_rows(result):
        table.add_row(*row)
    console.print(table, soft_wrap=False)
    for read in reads:
        for warning in read.warnings:
            typer.echo(f"warning: {warning}", err=True)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"model: {result.path}")
    typer.echo(f"metrics: {result.out / 'metrics.json'} (per epoch: history.jsonl)")
    if result.plot is not None:
        typer.echo(f"reliability diagram: {result.plot}")
    if result.threshold is not None:
        typer.echo(f"threshold reward.accept: saved in {result.path / 'taskloop_thresholds.json'}")
    if result.registered:
        typer.echo(f"registered: {result.registered}")


@handle_errors
def reward_command(
    data: FeedbackFiles = None,
    from_store: FromStore = False,
    database_url: StoreUrl = None,
    source: Source = "all",
    simulated_weight: SimulatedWeight = 1.0,
    backbone: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="Encoder or sequence-classification model (folder, hub id, models:/NAME); "
            "default: the packaged all-MiniLM-L6-v2.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder to write (default: $TASKLOOP_HOME/reward/<timestamp>).",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training rows.")] = 2,
    lr: Annotated[float, typer.Option(min=0.0, help="AdamW learning rate.")] = 3e-5,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Pairs (or rated answers) per optimizer step.")
    ] = 16,
    max_tokens: Annotated[
        int, typer.Option(min=8, help="Tokens per (prompt, answer); longer pairs are cut.")
    ] = 256,
    train_layers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Train only the top N transformer layers and the head (default: all)."
        ),
    ] = None,
    pointwise_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the thumbs/scores loss.")
    ] = 1.0,
    margin: Annotated[
        bool,
        typer.Option(
            "--margin/--no-margin", help="Score-gap pairs ask the reward gap to exceed the gap."
        ),
    ] = True,
    valid_fraction: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.99, help="Share of rows held out (whole prompts) for the metrics."
        ),
    ] = 0.1,
    truncation_side: Annotated[
        str,
        typer.Option(
            help="Cut long texts at the right (their end) or left (their start: keeps a "
            "dialogue's last turns)."
        ),
    ] = "right",
    seed: Annotated[int, typer.Option(help="Seed of the split, the head and the order.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    register: Annotated[
        str | None,
        typer.Option(
            "--register", metavar="NAME", help="Log the run and register the model as NAME."
        ),
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="With --register: point this alias (e.g. challenger) at it."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON instead of a table.")
    ] = False,
) -> None:
    """Train a reward model on ratings and report how well it ranks held-out answers.

    Reads --data files and/or the service's database (--from-store), keeps --source
    ratings, holds out whole prompts (--valid-fraction), trains a one-logit classifier
    with a Bradley-Terry loss on pairs and cross-entropy on thumbs/scores, tunes the
    reward.accept threshold on the held-out rows, and writes OUT/model (save_pretrained,
    with the threshold), OUT/metrics.json, OUT/history.jsonl, OUT/reliability.png and
    OUT/reward_config.json. --register logs the run to the model registry.
    """
    from taskloop.rlhf.errors import RewardModelError
    from taskloop.rlhf.reward import RewardConfig, train_reward_model

    if alias and not register:
        raise RewardModelError("--alias needs --register NAME", hint="add --register NAME")
    config = RewardConfig(
        backbone=backbone,
        max_tokens=max_tokens,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        train_layers=train_layers,
        pointwise_weight=pointwise_weight,
        use_margin=margin,
        valid_fraction=valid_fraction,
        seed=seed,
        device=device,
        threads=threads,
        truncation_side=truncation_side,
    )
    config.check()
    ratings = read_ratings(
        data, from_store, database_url, source, simulated_weight, error=RewardModelError
    )
    reads, pairs, points = ratings.reads, ratings.pairs, ratings.points
    if not pairs and not points:
        from taskloop.rlhf.feedback import NO_FEEDBACK_HINT

        where = ", ".join(r.source for r in reads)
        raise RewardModelError(
            f"no {'' if source == 'all' else source + ' '}feedback rows in {where}",
            hint=NO_FEEDBACK_HINT
            if source != "human"
            else "rate some answers on the "
            "feedback page, or use --source all to include simulated ratings",
        )
    with progress_bars(not json_out):
        result = train_reward_model(
            pairs, points, out or _default_out(), config, register_as=register, alias=alias
        )
    if json_out:
        payload = {
            "model": str(result.path),
            "out": str(result.out),
            "metrics": result.metrics,
            "threshold": result.threshold,
            "plot": str(result.plot) if result.plot else None,
            "registered": result.registered,
            "history": result.history,
            "warnings": [w for r in reads for w in r.warnings] + result.warnings,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print(result, reads)
