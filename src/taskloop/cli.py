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
from taskloop.evaluate.cli import register as register_evaluate
from taskloop.evaluate.explain_cli import register as register_explain
from taskloop.evaluate.thresholds_cli import app as thresholds_app
from taskloop.log import configure
from taskloop.models.compress_cli import app as compress_app
from taskloop.models.ensemble_cli import register as register_ensemble
from taskloop.models.registry_cli import app as models_app
from taskloop.monitor.drift_cli import register as register_drift
from taskloop.monitor.triggers_cli import app as retrain_app
from taskloop.rlhf.cli import app as rlhf_app
from taskloop.runcli import ModelOverrides
from taskloop.runcli import register as register_run
from taskloop.serve.cli import register as register_serve
from taskloop.serve.users_cli import clients_app, users_app
from taskloop.train.cli import register as register_train
from taskloop.train.tune import register as register_tune

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
app.add_typer(models_app, name="models")
app.add_typer(compress_app, name="compress")
app.add_typer(thresholds_app, name="thresholds")
app.add_typer(users_app, name="users")
app.add_typer(clients_app, name="clients")
app.add_typer(rlhf_app, name="rlhf")
app.add_typer(retrain_app, name="retrain")
register_run(app)
register_train(app)
register_tune(app)
register_evaluate(app)
register_explain(app)
register_ensemble(app)
register_serve(app)
register_drift(app)


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
    model: ModelOverrides = None,
) -> None:
    """The main job on embedded defaults: the bundled sample task archive as a blob,
    checked and repaired, then every task run on the offline defaults.

    Encodes the sample archive, damages a copy and shows verify and repair finding and
    salvaging it, then runs QA (extractive, all-MiniLM-L6-v2), summarization
    (extractive TextRank), translation and code generation on the intact blob: each
    answer checked and scored. Tasks with no offline model say so and what to pass;
    supplied code completions are still verified in the sandbox. Writes sample.zip,
    sample.blob, damaged.blob, the reports, and run/ (results.jsonl, report.json,
    report.html, result.blob) into --out. Exit 0 when every step did what it should.
    """
    from rich.table import Table

    from taskloop.demo import run_demo
    from taskloop.runcli import print_results, results_console
    from taskloop.runconfig import load_config, parse_model_overrides

    cfg = load_config(None, models=parse_model_overrides(model or []))
    result = run_demo(out, cfg)
    table = Table(title="taskloop demo: blob round trip through damage and repair")
    table.add_column("step")
    table.add_column("result")
    table.add_column("ms", justify="right")
    for s in result.steps:
        table.add_row(s.name, s.result, f"{s.seconds * 1000:.1f}")
    console = results_console()
    console.print(table)
    if result.repair_report is not None:
        typer.echo(result.repair_report.summary())
    if result.run is not None:
        print_results(result.run, console)
    if not result.ok:
        for failure in result.failures:
            typer.echo(f"demo check failed: {failure}", err=True)
        raise typer.Exit(1)
    typer.echo(f"demo ok: files in {out}")
