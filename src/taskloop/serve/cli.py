"""``taskloop serve``: the service on the embedded defaults, one command."""

from __future__ import annotations

from typing import Annotated

import typer

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.runcli import ModelOverrides


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    model: ModelOverrides = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="sqlite:///FILE or postgresql://USER:PASS@HOST/DB "
            "(default: SQLite in $TASKLOOP_HOME/serve.db). Env: TASKLOOP_SERVE_DATABASE_URL.",
        ),
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching",
            help="Gather concurrent generation requests into batches "
            "(default: TASKLOOP_SERVE_BATCHING, else on).",
            show_default=False,
        ),
    ] = None,
    torch_threads: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="CPU threads for the models (0: torch's choice). One is best when "
            "other processes share the CPU. Env: TASKLOOP_SERVE_TORCH_THREADS.",
        ),
    ] = None,
    warm_up: Annotated[
        bool, typer.Option(help="Load the models before /readyz reports ready.")
    ] = True,
) -> None:
    """Serve the HTTP API and the feedback page (http://HOST:PORT/, API docs at /docs).

    Settings come from TASKLOOP_SERVE_* variables (docs/service.md); options here win.
    Create a user first: `taskloop users add NAME --scope tasks:run --scope feedback:write`.
    """
    import uvicorn

    from taskloop.runconfig import parse_model_overrides
    from taskloop.serve.app import create_app
    from taskloop.serve.settings import ServeSettings

    given = {"batching": batching, "torch_threads": torch_threads, "database_url": database_url}
    overrides = {k: v for k, v in given.items() if v is not None}
    models = parse_model_overrides(model or [])
    settings = ServeSettings(**overrides)  # type: ignore[arg-type]
    if models:
        settings = settings.model_copy(update={"models": {**settings.models, **models}})
    app = create_app(settings, warm_up=warm_up)
    typer.echo(f"taskloop serve: http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("serve", epilog=EPILOG)(handle_errors(serve_command))
