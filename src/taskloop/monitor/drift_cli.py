"""``taskloop drift REFERENCE CURRENT``: have the inputs drifted?

Reads the texts of both inputs (:func:`taskloop.monitor.drift.load_texts`), runs the
MMD test on sentence embeddings and the KS tests on input statistics
(:func:`taskloop.monitor.drift.detect_drift`), prints one row per test and the verdict.
A completed check exits 0 whatever the verdict; ``--fail-on-drift`` makes drift exit 1,
for CI gates and cron jobs. docs/monitoring.md explains the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskloop.cliutil import EPILOG, handle_errors, progress_bars

if TYPE_CHECKING:
    from taskloop.monitor.drift import DriftReport

DRIFT_EXIT = 1  # with --fail-on-drift; as `diff` and `grep` use 1 for "found a difference"

DRIFT_EPILOG = (
    EPILOG + f"\n  with --fail-on-drift, {DRIFT_EXIT} also means: the check ran and found drift"
)


def report_rows(report: DriftReport) -> list[tuple[str, str, str, str, str]]:
    """(test, statistic, p, corrected p, drifted) per test, formatted for the table."""
    rows: list[tuple[str, str, str, str, str]] = []
    if report.mmd_p is not None and report.mmd_corrected_p is not None:
        rows.append(
            (
                "mmd (embeddings)",
                f"MMD²={report.mmd2:.4g}",
                f"{report.mmd_p:.3g}",
                f"{report.mmd_corrected_p:.3g}",
                "yes" if report.mmd_corrected_p < report.alpha else "no",
            )
        )
    for ks in report.ks:
        rows.append(
            (
                f"ks {ks.feature}",
                f"D={ks.statistic:.3f} (mean {ks.ref_mean:.3g} → {ks.cur_mean:.3g})",
                f"{ks.p_value:.3g}",
                f"{ks.corrected_p:.3g}",
                "yes" if ks.corrected_p < report.alpha else "no",
            )
        )
    return rows


def verdict(report: DriftReport) -> str:
    """One line: drift or not, at which alpha, with how many tests."""
    hits = sum(p < report.alpha for p in report.p_values().values())
    base = (
        f"alpha={report.alpha:g}, Bonferroni over {report.tests} tests, "
        f"{report.n_ref} reference vs {report.n_cur} current inputs"
    )
    if report.drifted:
        return f"drift: yes ({hits} of {report.tests} tests below alpha; {base})"
    return f"drift: no ({base})"


def print_report(report: DriftReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title=f"taskloop drift: {report.compared}")
    for col in ("test", "statistic", "p", "corrected p", "drifted"):
        table.add_column(col, justify="left" if col in ("test", "statistic") else "right")
    for row in report_rows(report):
        table.add_row(*row)
    console.print(table, soft_wrap=False)
    typer.echo(verdict(report))


def drift_command(
    reference: Annotated[
        Path,
        typer.Argument(
            metavar="REFERENCE",
            help="Reference inputs: a .txt (one input per line), task files (.jsonl/.json/"
            ".csv), a folder, a task archive or blob, or JSON Lines with a text field.",
            show_default=False,
        ),
    ],
    current: Annotated[
        Path,
        typer.Argument(
            metavar="CURRENT", help="Recent inputs, in any of the same forms.", show_default=False
        ),
    ],
    alpha: Annotated[
        float,
        typer.Option(
            help="False-alarm rate of the whole check: drift when any Bonferroni-corrected "
            "p-value is below it.",
        ),
    ] = 0.05,
    permutations: Annotated[
        int,
        typer.Option(min=1, help="Permutations of the MMD test (smallest p: 1/(1+N))."),
    ] = 500,
    field: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The field compared (default per task: translate source, summarize "
            "document, qa question, codegen prompt; 'text' for plain JSON Lines).",
        ),
    ] = None,
    mmd: Annotated[
        bool,
        typer.Option("--mmd/--no-mmd", help="Run the embedding MMD test (needs the encoder)."),
    ] = True,
    encoder: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="A sentence-transformers model folder (default: the packaged MiniLM).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda or mps.")] = (
        "auto"
    ),
    max_samples: Annotated[
        int,
        typer.Option(
            min=2, metavar="N", help="At most N inputs per side in the MMD (a seeded sample)."
        ),
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the permutations and the sample.")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    fail_on_drift: Annotated[
        bool,
        typer.Option(
            "--fail-on-drift",
            help=f"Exit {DRIFT_EXIT} when drift is found (default: 0 whenever the check ran).",
        ),
    ] = False,
) -> None:
    """Test whether CURRENT inputs drifted from REFERENCE inputs.

    Runs an MMD permutation test on sentence embeddings and KS tests on input length
    (characters, words), the share of ASCII letters (language) and the unknown-word
    rate, Bonferroni-corrected. Prints one row per test and the verdict; exits 0 when
    the check ran, drift or not, unless --fail-on-drift.
    """
    from taskloop.monitor.drift import DriftError, detect_drift, load_texts

    if not 0 < alpha < 1:
        raise DriftError(f"--alpha must be between 0 and 1 (exclusive), got {alpha}")
    ref = load_texts(reference, field=field)
    cur = load_texts(current, field=field)
    embedder = None
    if mmd:
        from taskloop.models.encoder import load_encoder

        embedder = load_encoder(encoder, device=device)
    with progress_bars(not json_out):
        report = detect_drift(
            ref.texts,
            cur.texts,
            encoder=embedder,
            alpha=alpha,
            permutations=permutations,
            seed=seed,
            mmd=mmd,
            max_mmd_samples=max_samples,
            compared=f"{ref.what} of {ref.source} vs {cur.what} of {cur.source}",
        )
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_report(report)
    if report.drifted and fail_on_drift:
        raise typer.Exit(DRIFT_EXIT)


def register(app: typer.Typer) -> None:
    """Add the ``drift`` command to ``app``."""
    app.command("drift", epilog=DRIFT_EPILOG)(handle_errors(drift_command))
