"""``taskloop models``: list, show, promote, roll back and register model versions (thin)."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import EPILOG, handle_errors

if TYPE_CHECKING:
    from rich.console import Console

    from taskloop.models.registry import PromoteResult

app = typer.Typer(
    help="The model registry (MLflow): versions, aliases (champion, challenger), promotion "
    "and rollback. Load a registered model anywhere a model is named: models:/NAME@champion, "
    "models:/NAME/3 or models:/NAME (latest).",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking/registry URI. Default: $TASKLOOP_TRACKING_URI, "
        "$MLFLOW_TRACKING_URI, else sqlite:///$TASKLOOP_HOME/mlflow.db (./.taskloop).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
Alias = Annotated[str, typer.Option("--alias", metavar="ALIAS", help="The alias to move.")]


def _console() -> Console:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}→v{v}" for a, v in sorted(aliases.items())) or "-"


def _metrics(metrics: dict[str, float], limit: int = 4) -> str:
    shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())[:limit])
    return shown + (" ..." if len(metrics) > limit else "") if metrics else "-"


@handle_errors
def list_command(tracking_uri: TrackingUri = None, as_json: AsJson = False) -> None:
    """List registered models with their latest version and aliases."""
    from rich.table import Table

    from taskloop.models.registry import list_models

    models = list_models(tracking_uri)
    if as_json:
        _echo_json([asdict(m) for m in models])
        return
    if not models:
        typer.echo("no registered models (register one: taskloop models register DIR --name N)")
        return
    table = Table(title="registered models")
    for col in ("name", "latest", "aliases", "description"):
        table.add_column(col, overflow="fold")
    for m in models:
        latest = f"v{m.latest_version}" if m.latest_version is not None else "-"
        table.add_row(m.name, latest, _aliases(m.aliases), m.description or "")
    _console().print(table)


@handle_errors
def show_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Show a model's versions: run, creation time, last metrics, aliases."""
    from rich.table import Table

    from taskloop.models.registry import show

    detail = show(name, tracking_uri)
    if as_json:
        _echo_json(asdict(detail))
        return
    table = Table(title=f"{detail.name}  aliases: {_aliases(detail.aliases)}")
    for col in ("version", "aliases", "created (UTC)", "run", "metrics"):
        table.add_column(col, overflow="fold")
    for v in detail.versions:
        table.add_row(
            f"v{v.version}",
            ", ".join(v.aliases) or "-",
            v.created.strftime("%Y-%m-%d %H:%M:%S"),
            (v.run_id or "-")[:12],
            _metrics(v.metrics),
        )
    con = _console()
    con.print(table)
    for alias, versions in sorted(detail.history.items()):
        if versions:
            shown = ", ".join(f"v{n}" for n in versions)
            con.print(f"{alias} history (oldest first): {shown}", highlight=False)


def _print_move(result: PromoteResult, verb: str, as_json: bool) -> None:
    if as_json:
        _echo_json(asdict(result))
        return
    was = f"v{result.previous}" if result.previous is not None else "nothing"
    if result.previous == result.version:
        typer.echo(f"{result.name}@{result.alias} already points at v{result.version}")
    else:
        typer.echo(f"{verb} {result.name}@{result.alias} -> v{result.version} (was {was})")


@handle_errors
def promote_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            metavar="N",
            help="The version to promote (default: the one --from-alias points at).",
        ),
    ] = None,
    alias: Alias = "champion",
    from_alias: Annotated[
        str, typer.Option("--from-alias", metavar="ALIAS", help="Promote this alias's version.")
    ] = "challenger",
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Point --alias (champion) at a version; the previous holder can be rolled back to."""
    from taskloop.models.registry import promote

    result = promote(name, version, alias=alias, from_alias=from_alias, uri=tracking_uri)
    _print_move(result, "promoted", as_json)


@handle_errors
def rollback_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    alias: Alias = "champion",
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Point --alias (champion) back at the version it held before its last move."""
    from taskloop.models.registry import rollback

    _print_move(rollback(name, alias=alias, uri=tracking_uri), "rolled back", as_json)


@handle_errors
def register_command(
    model_dir: Annotated[
        Path,
        typer.Argument(metavar="MODEL_DIR", help="A folder written by save_pretrained."),
    ],
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Registered model name.")],
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias",
            metavar="ALIAS",
            help="Point this alias at the new version (its previous holder can be rolled "
            "back to; '' sets no alias).",
        ),
    ] = "challenger",
    experiment: Annotated[
        str, typer.Option("--experiment", metavar="NAME", help="Experiment of the run.")
    ] = "registered-folders",
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Register an existing model folder as a new version (logged as a run with the model)."""
    from taskloop.models.registry import log_run

    config_file = model_dir / "config.json"
    config: dict[str, Any] = {"model_dir": str(model_dir.resolve())}
    # log_run says what is wrong with the folder; the type is only a note.
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        config["model_type"] = json.loads(config_file.read_text(encoding="utf-8"))["model_type"]
    record = log_run(
        experiment=experiment,
        run_name=f"register {name}",
        config=config,
        model_dir=model_dir,
        register_as=name,
        alias=alias or None,
        uri=tracking_uri,
    )
    if as_json:
        _echo_json(asdict(record))
        return
    named = f" as {name}@{alias}" if alias else ""
    typer.echo(f"registered {model_dir} -> {record.uri}{named} (run {record.run_id})")


app.command("list", epilog=EPILOG)(list_command)
app.command("show", epilog=EPILOG)(show_command)
app.command("promote", epilog=EPILOG)(promote_command)
app.command("rollback", epilog=EPILOG)(rollback_command)
app.command("register", epilog=EPILOG)(register_command)
