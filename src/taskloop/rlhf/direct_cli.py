"""``taskloop rlhf dpo``: fine-tune a task model directly on ratings (DPO, IPO or KTO).

Reads ratings from export files (``--data``, :func:`taskloop.rlhf.feedback.read_feedback`)
and/or the service's store (``--from-store``), keeps the chosen source, trains with
:func:`taskloop.rlhf.direct.train_direct` and prints the held-out accuracy of the
implicit reward before and after, and where the policy went. docs/direct-preference.md
explains the losses.
"""

from __future__ import annotations

import json
import sys
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
    from taskloop.rlhf.direct import DirectResult

METRIC_ROWS = (
    ("reward_accuracy", "preference accuracy of the implicit reward"),
    ("margin", "mean implicit-reward margin"),
    ("logprob_accuracy", "preference accuracy of the policy's log-prob"),
    ("loss", "loss"),
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def print_result(result: DirectResult) -> None:
    """A table of the held-out metrics before and after, then where the policy went."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    held = "held-out" if result.evaluated_on == "valid" else "training"
    n = result.counts["valid"] or result.counts["train"]
    table = Table(title=f"taskloop rlhf dpo ({result.loss}, {result.kind}): {n} {held} rows")
    for col in ("metric", "before", "after"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, label in METRIC_ROWS:
        if key in result.before or key in result.after:
            table.add_row(label, _fmt(result.before.get(key)), _fmt(result.after.get(key)))
    console.print(table, soft_wrap=False)
    last = result.steps[-1] if result.steps else None
    if last is not None:
        moved = "KL estimate z0" if result.loss == "kto" else "mean log-ratio"
        typer.echo(
            f"{len(result.steps)} steps on {result.counts['train']} rows; last step: "
            f"loss {last.loss:.4g}, reward accuracy {last.reward_accuracy:.3g}, "
            f"margin {_fmt(last.margin)}, {moved} {last.kl:.4g}"
        )
    typer.echo(f"policy saved to {result.path} (steps.jsonl, steps.png, summary.json beside it)")
    if result.run is not None:
        typer.echo(
            f"registered as {result.run.uri} with alias challenger "
            f"(compare it with the champion before promoting)"
        )


@handle_errors
def direct_command(
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            metavar="MODEL",
            help="The seq2seq or causal task model to fine-tune: a folder, a hub id in the "
            "local cache, or models:/NAME@ALIAS.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder for the trained policy and its logs.",
            show_default=False,
        ),
    ],
    data: FeedbackFiles = None,
    from_store: FromStore = False,
    database_url: StoreUrl = None,
    source: Source = "all",
    simulated_weight: SimulatedWeight = 1.0,
    loss: Annotated[
        str,
        typer.Option(
            metavar="dpo|ipo|kto",
            help="dpo or ipo (learn from preference pairs), or kto (learn from thumbs).",
        ),
    ] = "dpo",
    beta: Annotated[
        float,
        typer.Option(
            help="Tie to the reference model: smaller lets the policy move further from it."
        ),
    ] = 0.1,
    label_smoothing: Annotated[
        float,
        typer.Option(
            help="DPO only: assumed share of flipped preference labels (conservative DPO)."
        ),
    ] = 0.0,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training rows.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per optimizer step.")] = 8,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (constant).")] = 5e-6,
    valid_fraction: Annotated[
        float,
        typer.Option(help="Share of prompts held out to measure the policy before and after."),
    ] = 0.1,
    max_prompt_tokens: Annotated[
        int, typer.Option(min=1, help="Prompt tokens kept (a causal prompt keeps its end).")
    ] = 256,
    max_response_tokens: Annotated[
        int, typer.Option(min=2, help="Response tokens kept, end-of-sequence included.")
    ] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split and the batch order.")] = 0,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps.")] = (
        "auto"
    ),
    register: Annotated[
        str | None,
        typer.Option(
            "--register",
            metavar="NAME",
            help="Register the policy in the model registry as a new version of NAME with "
            "alias challenger.",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print summary.json instead of a table.")
    ] = False,
) -> None:
    """Fine-tune a task model directly on ratings with DPO, IPO or KTO (no reward model).

    Reads preference pairs (dpo, ipo) or thumbs (kto) from --data export files and/or the
    service's store, keeps --source, holds out a share of the prompts and trains the policy
    against a frozen copy of itself. Writes into --out the policy (loadable by every
    taskloop command), steps.jsonl, steps.png, summary.json and direct_config.json;
    prints the held-out accuracy of the implicit reward before and after.
    """
    from taskloop.rlhf.direct import DirectConfig, train_direct

    config = DirectConfig(
        loss=loss,  # type: ignore[arg-type]  # checked by config.check()
        beta=beta,
        label_smoothing=label_smoothing,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_prompt_tokens=max_prompt_tokens,
        max_response_tokens=max_response_tokens,
        valid_fraction=valid_fraction,
        seed=seed,
        device=device,
    )
    config.check()
    ratings = read_ratings(data, from_store, database_url, source, simulated_weight)
    pairs, points = ratings.pairs, ratings.points
    with progress_bars(not json_out):
        result = train_direct(policy, pairs, points, out, config, register_as=register)
    if json_out:
        typer.echo(json.dumps(result.summary(), indent=2, default=str))
    else:
        print_result(result)
