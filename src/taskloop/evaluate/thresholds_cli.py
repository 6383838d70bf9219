"""``taskloop thresholds ...``: tune decision thresholds on validation data, save, show.

``tune`` reads scores and labels from JSON Lines; ``qa`` runs the QA task on validation
questions and tunes its no-answer decision; ``show`` prints what is saved for a model.
The library is :mod:`taskloop.evaluate.thresholds`; docs/thresholds.md has the format.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskloop.cliutil import EPILOG, handle_errors

if TYPE_CHECKING:
    from rich.console import Console

    from taskloop.evaluate.thresholds import QATuning, Thresholds

app = typer.Typer(
    help="Choose decision thresholds on validation data (max F1, Youden's J, a target "
    "precision or recall), save them with the model, and show them.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)

RuleOpt = Annotated[
    str,
    typer.Option(
        "--rule",
        "-r",
        metavar="RULE",
        help="f1 (max F1), youden (max TPR - FPR), precision or recall (with --target), "
        "or precision>=X / recall>=X.",
    ),
]
TargetOpt = Annotated[
    float | None,
    typer.Option(
        metavar="X", help="The precision or recall to reach (0-1]; the other is maximised."
    ),
]
DeviceOpt = Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps.")]
SaveOpt = Annotated[
    bool, typer.Option("--save/--no-save", help="Save the thresholds with the model.")
]


def _console() -> Console:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _table(th: Thresholds) -> None:
    from rich.table import Table

    table = Table(title=f"{th.name}: {th.rule} on {th.n} validation examples ({th.score_name})")
    for col in ("class", "threshold", "precision", "recall", "F1", "TPR", "FPR", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for cls, t in th.thresholds.items():
        v = th.validation[cls]
        table.add_row(
            cls,
            f"{t:.6g}",
            *(f"{v[k]:.3f}" for k in ("precision", "recall", "f1", "tpr", "fpr")),
            str(int(v["support"])),
        )
    _console().print(table)


def _save(th: Thresholds, model: str | None, save: bool) -> None:
    from taskloop.evaluate.thresholds import save_thresholds

    if not save or model is None:
        typer.echo("not saved (give --model to save with a model)" if save else "not saved")
        return
    typer.echo(f"saved {th.name} to {save_thresholds(th, model)}")


@app.command()
@handle_errors
def tune(
    scores: Annotated[
        Path,
        typer.Argument(
            metavar="SCORES.jsonl",
            help='Validation rows {"score": number or [one per class], "label": ...}; '
            "binary labels 0/1 or true/false (1 = positive), class labels a name or index.",
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name", "-n", help="The decision: qa.no_answer, summarize.factuality, reward.accept."
        ),
    ],
    rule: RuleOpt = "f1",
    target: TargetOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="PATH_OR_NAME",
            help="The model the scores came from: its folder gets taskloop_thresholds.json "
            "(hub ids: $TASKLOOP_HOME/thresholds/).",
        ),
    ] = None,
    score_name: Annotated[
        str, typer.Option(help="What the score is (checked by the task that reads it).")
    ] = "score",
    classes: Annotated[
        str | None,
        typer.Option(metavar="A,B,C", help="Multi-class: the class of each score column."),
    ] = None,
    fallback: Annotated[
        str, typer.Option(help="Multi-class: the label when no class clears its threshold.")
    ] = "none",
    save: SaveOpt = True,
) -> None:
    """Tune one decision's thresholds on a JSON Lines file of scores and labels."""
    from taskloop.evaluate.thresholds import read_scores, threshold_tuning

    values, labels = read_scores(scores)
    th = threshold_tuning(
        values,
        labels,
        rule=rule,
        target=target,
        classes=[c.strip() for c in classes.split(",")] if classes else None,
        name=name,
        model=model,
        score_name=score_name,
        fallback=fallback,
    )
    _table(th)
    _save(th, model, save)


def _squad_table(result: QATuning) -> None:
    from rich.table import Table

    found = result.scores
    table = Table(
        title=f"SQuAD v2 on {len(found.examples)} questions ({found.path}, {found.model})"
    )
    for col in ("no-answer rule", "EM", "F1", "HasAns F1", "NoAns acc", "abstains"):
        table.add_column(col, justify="left" if col == "no-answer rule" else "right")
    t = result.thresholds.value
    rows = [
        (f"default (score > {found.default_cut:g})", result.squad_default, found.default_cut, ">"),
        (f"tuned (score >= {t:.6g})", result.squad_tuned, t, ">="),
    ]
    for label, got, cut, op in rows:
        abstains = (found.scores > cut) if op == ">" else (found.scores >= cut)
        table.add_row(
            label,
            f"{100 * got['exact']:.1f}",
            f"{100 * got['f1']:.1f}",
            f"{100 * got.get('HasAns_f1', 0.0):.1f}",
            f"{100 * got.get('NoAns_exact', 0.0):.1f}",
            f"{100 * abstains.mean():.1f}%",
        )
    _console().print(table)


@app.command()
@handle_errors
def qa(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA",
            help="Validation questions with answers and unanswerable ones (SQuAD v2 JSON, "
            "JSONL/CSV, a task folder, .zip or blob).",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="PATH_OR_NAME",
            help="A *ForQuestionAnswering model or a sentence encoder (default: the packaged "
            "all-MiniLM-L6-v2 of the offline extractive default).",
        ),
    ] = None,
    rule: RuleOpt = "f1",
    target: TargetOpt = None,
    device: DeviceOpt = "auto",
    save: SaveOpt = True,
) -> None:
    """Tune qa.no_answer (positive = the question has no answer) on validation questions."""
    from taskloop.evaluate.thresholds import tune_qa_no_answer
    from taskloop.train.inputs import read_inputs

    inputs = read_inputs([str(data)], tasks=["qa"])
    result = tune_qa_no_answer(
        inputs.examples,  # type: ignore[arg-type]  # tasks=["qa"] keeps QAExamples only
        model=model,
        rule=rule,
        target=target,
        device=device,
    )
    found = result.scores
    if found.skipped or inputs.errors:
        typer.echo(
            f"{found.skipped} questions without gold answers or unusable skipped, "
            f"{len(inputs.errors)} bad rows",
            err=True,
        )
    _table(result.thresholds)
    _squad_table(result)
    _save(result.thresholds, found.model, save)


@app.command()
@handle_errors
def show(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="A model folder, hub id or models:/ URI (the encoder's name "
            "for the extractive QA default: sentence-transformers/all-MiniLM-L6-v2).",
        ),
    ],
) -> None:
    """Print the thresholds saved for a model."""
    from taskloop.evaluate.thresholds import load_all_thresholds

    file, stored = load_all_thresholds(model)
    if not stored:
        typer.echo(f"no thresholds saved for {model} (looked for {file})")
        return
    typer.echo(f"thresholds for {model} ({file}):")
    for th in stored.values():
        _table(th)
        typer.echo(f"  created {th.created}; {th.description}".rstrip("; "))
