"""The FastAPI app factory: wiring only (settings → storage, auth, batching, metrics, drift,
routers, the feedback page). ``taskloop serve`` runs ``create_app()`` under uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskloop import __version__
from taskloop.data.records import Example, Prediction
from taskloop.errors import TaskloopError
from taskloop.log import logger
from taskloop.serve.errors import AuthError, NotFoundError, StorageError
from taskloop.serve.service import BadRow, Service, run_batch
from taskloop.serve.settings import ServeSettings

DESCRIPTION = """\
Run taskloop's tasks (code generation, question answering, summarization, translation)
and blobs of task files, and rate the answers. Every answer is verified and stored; every
rating is tied to a stored answer and trains the reward model.

Authenticate at `/v1/auth/token` (OAuth2 password or client-credentials flow) and send
`Authorization: Bearer <token>`; each route names the scope it needs.
"""

_HTTP_CODES = {
    401: "serve.auth",
    403: "serve.forbidden",
    404: "serve.not_found",
    405: "serve.method",
    413: "serve.too_large",
    429: "serve.rate_limited",
}
_STATUS: dict[type[TaskloopError], int] = {
    BadRow: 422,
    NotFoundError: 404,
    AuthError: 401,
    StorageError: 503,
}


def _problem(
    status: int,
    code: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"code": code, "message": message, "hint": hint}
    return JSONResponse(status_code=status, content=body, headers=headers)


def _install_errors(app: FastAPI) -> None:
    from taskloop.serve.batching import QueueFull

    @app.exception_handler(TaskloopError)
    async def taskloop_error(request: Request, exc: TaskloopError) -> JSONResponse:
        status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 400)
        return _problem(status, exc.code, exc.message, exc.hint)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        retry = max(1, round(exc.retry_after_s))
        return _problem(
            503,
            "serve.busy",
            "the task's queue is full",
            "retry later",
            headers={"Retry-After": str(retry)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 401/403 from auth, 404 for unknown paths, 413, 429: the same body as every
        # other error, keeping the exception's headers (WWW-Authenticate, Retry-After).
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        code = _HTTP_CODES.get(exc.status_code, "serve.http")
        return _problem(exc.status_code, code, message, None, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _problem(
            422, "serve.invalid", f"{where}: {first.get('msg')}", "see the schema at /docs"
        )


def _warm_up(service: Service) -> None:
    """Load what the first request would otherwise wait for: the sentence encoder the
    offline QA and summarization defaults use, and every configured model."""
    from taskloop.models.loader import load_model

    if not {"qa", "summarize"} <= set(service.settings.models):
        encoder = service.resources.encoder()
        for task in ("qa", "summarize"):
            if task not in service.settings.models:
                service.loaded[task] = encoder.name
    for task, name in service.settings.models.items():
        service.loaded[task] = load_model(name).describe()


def build_service(settings: ServeSettings) -> Service:
    """Storage (migrated), metrics, batcher, drift monitor: the service's shared state."""
    from taskloop.models.cache import LRUCache
    from taskloop.monitor.drift import DriftMonitor
    from taskloop.monitor.events import AnomalyDetector
    from taskloop.monitor.metrics import make_metrics, observe_batch, set_queue_depth
    from taskloop.serve.batching import DynamicBatcher
    from taskloop.serve.storage.db import make_engine, session_factory, upgrade
    from taskloop.tasks.context import Resources

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    url = settings.resolved_database_url()
    upgrade(url)
    sessions = session_factory(make_engine(url))
    metrics = make_metrics()
    holder: dict[str, Service] = {}
    batcher: DynamicBatcher[Example, Prediction] = DynamicBatcher(
        lambda task, items: run_batch(holder["service"], task, items),
        max_batch_size=settings.batch_max_size,
        max_wait_ms=settings.batch_max_wait_ms,
        max_queue=settings.batch_queue_size,
        enabled=settings.batching,
        on_batch=lambda key, size, seconds: observe_batch(metrics, key, size),
        on_queue_depth=lambda key, depth: set_queue_depth(metrics, key, depth),
    )
    drift = (
        DriftMonitor.from_file(
            settings.drift_reference, window=settings.drift_window, metrics=metrics
        )
        if settings.drift_reference
        else DriftMonitor(window=settings.drift_window, metrics=metrics)
    )
    service = Service(
        settings=settings,
        resources=Resources(cache=LRUCache(max_items=4096)),
        sessions=sessions,
        metrics=metrics,
        batcher=batcher,
        drift=drift,
        anomalies=AnomalyDetector(metrics=metrics),
    )
    holder["service"] = service
    return service


def create_app(settings: ServeSettings | None = None, *, warm_up: bool = True) -> FastAPI:
    """The app. ``warm_up`` loads the models before /readyz says ready (tests that only
    check routing pass False and get a ready app at once)."""
    from taskloop.monitor.metrics import inference_monitoring
    from taskloop.serve.auth import check_algorithm
    from taskloop.serve.ratelimit import RateLimiter, install_security
    from taskloop.serve.routers import auth, blobs, drift, feedback, health, models, tasks

    settings = settings or ServeSettings()
    check_algorithm(settings.jwt_algorithm)  # a bad setting fails here, not on every request
    service = build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            await asyncio.to_thread(_warm_up, service)
        service.ready = True
        logger.info("serve ready", extra={"event": "ready", "models": service.loaded})
        yield
        await service.batcher.close()

    app = FastAPI(
        title="taskloop",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.sessions = service.sessions
    app.state.jwt_secret = settings.resolved_jwt_secret()
    app.state.limiter = RateLimiter(settings.rate_per_minute, settings.rate_burst)
    install_security(app, settings)
    inference_monitoring(app, service.metrics, anomalies=service.anomalies)
    _install_errors(app)
    for module in (health, auth, tasks, blobs, feedback, models, drift):
        app.include_router(module.router)
    ui = files("taskloop.serve") / "ui"
    app.mount("/ui", StaticFiles(directory=str(ui), html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app


def app_from_env() -> Any:
    """``uvicorn --factory taskloop.serve.app:app_from_env``: settings from the environment."""
    return create_app()
