"""The ``taskloop`` command line: one Typer app, each command a thin call into the library."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from taskloop import __version__
from taskloop.blob.cli import blob_app
from taskloop.cliutil import EPILOG, handle_errors, progress_bars
from taskloop.config import Settings
from taskloop.log import configure

app = typer.Typer(
    name="taskloop",
    help="taskloop: multi-task text models that improve themselves from feedback.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(blob_app, name="blob")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taskloop {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            metavar="FORMAT",
            help="Log records as 'text' (people) or 'json' (machines). Env: TASKLOOP_LOG_FORMAT.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Debug records, with tracebacks of errors.")
    ] = False,
) -> None:
    """taskloop: multi-task text models that improve themselves from feedback.

    Every processing step logs one record (name, duration, sizes) to stderr.
    """
    settings = Settings()
    fmt = log_format or settings.log_format
    if fmt not in ("text", "json"):
        raise typer.BadParameter("must be 'text' or 'json'", param_hint="--log-format")
    level = logging.DEBUG if debug else logging.WARNING if quiet else settings.log_level
    configure(level=level, fmt=fmt)
    ctx.with_resource(progress_bars(enabled=not quiet))


def main() -> None:
    """Entry point of the ``taskloop`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()


@app.command()
@handle_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Directory for the demo's files.")
    ] = Path("demo-out"),
) -> None:
    """The main job on embedded defaults: encode the bundled sample task archive as a blob,
    damage it, verify it, repair it, extract it, and check every recovered file.

    Writes sample.zip, sample.blob, damaged.blob, verify-report.json, repaired.zip,
    repair-report.json and extracted/ into --out. Exit 0 when repair did exactly what it
    should.
    """
    from rich.console import Console
    from rich.table import Table

    from taskloop.demo import run_demo

    result = run_demo(out)
    table = Table(title="taskloop demo: blob round trip through damage and repair")
    table.add_column("step")
    table.add_column("result")
    table.add_column("ms", justify="right")
    for s in result.steps:
        table.add_row(s.name, s.result, f"{s.seconds * 1000:.1f}")
    console = Console()
    console.print(table)
    if result.repair_report is not None:
        typer.echo(result.repair_report.summary())
    if not result.ok:
        for failure in result.failures:
            typer.echo(f"demo check failed: {failure}", err=True)
        raise typer.Exit(1)
    typer.echo(f"demo ok: files in {out}")
