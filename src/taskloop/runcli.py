"""``taskloop run``: the CLI face of :func:`taskloop.pipeline.run` (thin on purpose)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

# `--model TASK=MODEL`, shared by `run` and `demo`.
ModelOverrides = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        metavar="TASK=MODEL",
        help="Model for a task: a folder saved with save_pretrained or a hub id in the local "
        "cache (e.g. translate=./opus-mt-en-de). Repeatable.",
    ),
]

# The metrics worth a glance per task; report.json and report.html hold all of them.
HEADLINE = {
    "codegen": ("pass@1", "pass@10", "generated_tests_passed"),
    "qa": ("exact", "f1", "HasAns_f1", "NoAns_exact"),
    "summarize": ("rouge1", "rouge2", "rougeL", "factcheck_pass"),
    "translate": ("bleu", "chrf++", "glossary_terms_pass"),
}


def headline(task: str, metrics: dict[str, float]) -> str:
    keys = [k for k in HEADLINE.get(task, ()) if k in metrics] or list(metrics)[:4]
    return " ".join(f"{k}={metrics[k]:.3g}" for k in keys)


def results_console() -> Console:
    """The terminal's own width, or 120 columns when stdout is a file or pipe (not 80)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def print_results(result: object, console: object | None = None) -> None:
    """The results table: one row per task file, with model, counts and main metrics."""
    from rich.console import Console
    from rich.table import Table

    from taskloop.pipeline import RunResult

    assert isinstance(result, RunResult)
    con = console if isinstance(console, Console) else results_console()
    table = Table(title="taskloop results (ok/flagged/failed/skipped)")
    for col in ("task", "file", "model", "mode", "items", "metrics"):
        table.add_column(col, overflow="fold")
    for t in result.report.tasks:
        counts = "/".join(str(t.counts.get(s, 0)) for s in ("ok", "flagged", "failed", "skipped"))
        table.add_row(
            t.task, t.file, t.model or "none", t.mode, counts, headline(t.task, t.metrics)
        )
    con.print(table)
    for t in result.report.tasks:
        for w in t.warnings:
            con.print(
                f"{t.task} ({t.file}): {w}",
                style="yellow",
                markup=False,
                highlight=False,
                soft_wrap=True,  # no inserted line breaks: the advice is copied and pasted
            )
    if result.report.row_errors:
        n = len(result.report.row_errors)
        con.print(f"{n} row{'s' if n != 1 else ''} or files not used:", highlight=False)
        for e in result.report.row_errors[:20]:
            con.print(f"  {e}", markup=False, highlight=False)
        if len(result.report.row_errors) > 20:
            con.print(f"  ... and {len(result.report.row_errors) - 20} more (report.json)")
    info = result.report.input
    if info.blob_outcome not in (None, "intact"):
        con.print(f"input {info.path}: {info.blob_outcome}", style="yellow", highlight=False)
        for problem in info.blob_problems:
            con.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
    for w in result.report.warnings:
        con.print(f"warning: {w}", markup=False, highlight=False)


def run_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A taskloop blob, a base64 text, a .zip, a folder of task files, or one "
            "task file (.jsonl, .json, .csv; named for its task when rows lack 'task').",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the results.")
    ] = Path("taskloop-out"),
    model: ModelOverrides = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", metavar="YAML", help="Run config (see docs/task-format.md)."
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            metavar="TASK",
            help="Run only this task: codegen, qa, summarize, translate (repeatable).",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(metavar="DTYPE", help="auto, float32, float16 or bfloat16.")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option("--cache", metavar="FILE", help="SQLite file that keeps outputs across runs."),
    ] = None,
    max_items: Annotated[
        int | None, typer.Option(metavar="N", help="At most this many rows per task file.")
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Key for an encrypted input blob.")
    ] = None,
    allow_download: Annotated[
        bool,
        typer.Option(help="Fetch models missing from the local cache (needs the hub)."),
    ] = False,
) -> None:
    """Run every task file of INPUT: decode, verify, route, generate, check, score.

    Writes results.jsonl, report.json, report.html, config.json and result.blob (all of
    them, as a blob) into --out, and prints a results table. Bad rows are listed with
    file, row and field; the good rows still run. Exit 0 when the run completed, 3 when
    the input blob was damaged and files were lost in its repair (the rest ran).
    """
    from taskloop.pipeline import run
    from taskloop.runconfig import load_config, parse_model_overrides

    cfg = load_config(
        config,
        models=parse_model_overrides(model or []),
        tasks=task or None,
        device=device,
        dtype=dtype,
        cache_path=str(cache) if cache else None,
        max_items=max_items,
        key_file=str(key_file) if key_file else None,
        allow_download=allow_download or None,
    )
    result = run(input_path, out, cfg)
    print_results(result)
    typer.echo(f"report: {out / 'report.html'}  result blob: {out / 'result.blob'}")
    if result.report.input.blob_outcome == "repaired_with_losses":
        raise typer.Exit(int(ExitStatus.REPAIRED_WITH_LOSSES))


def register(app: typer.Typer) -> None:
    app.command("run", epilog=EPILOG)(handle_errors(run_command))
