"""Prometheus metrics of the service, on a registry of its own per app.

``make_metrics`` builds every metric on a fresh :class:`CollectorRegistry` (never the
process-wide default one), so tests and several apps in one process do not collide.
The app calls the ``observe_*`` helpers; :func:`inference_monitoring` adds the request
middleware; ``render`` produces the ``/metrics`` body. Label values stay bounded: routes
are labelled by their template (``/v1/tasks/{task}``), never by the raw path.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from taskloop.log import rss_mb

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from taskloop.monitor.events import AnomalyDetector

# Requests range from a cached answer (ms) to a long summary on CPU (tens of seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

# Names as PromQL sees them: histograms by their base name (``_bucket``, ``_sum`` and
# ``_count`` are exported under it), counters with their ``_total`` suffix.
METRIC_NAMES: tuple[str, ...] = (
    "taskloop_request_seconds",
    "taskloop_task_seconds",
    "taskloop_requests_total",
    "taskloop_predictions_total",
    "taskloop_verification_failures_total",
    "taskloop_errors_total",
    "taskloop_batch_size",
    "taskloop_queue_depth",
    "taskloop_feedback_total",
    "taskloop_process_resident_bytes",
    "taskloop_gpu_memory_bytes",
    "taskloop_drift_p_value",
    "taskloop_drift_detected",
    "taskloop_anomalies_total",
)

UNMATCHED_ROUTE = "unmatched"  # every path no route matched (404s): one label, not one per path


@dataclass(frozen=True)
class Metrics:
    """Every metric of one app, on that app's registry."""

    registry: CollectorRegistry
    request_seconds: Histogram  # route, method, status
    task_seconds: Histogram  # task, model
    requests: Counter  # route, status
    predictions: Counter  # task, status
    verification_failures: Counter  # task, check
    errors: Counter  # type
    batch_size: Histogram  # model
    queue_depth: Gauge  # model
    feedback: Counter  # kind, value
    resident_bytes: Gauge
    gpu_memory_bytes: Gauge  # device
    drift_p_value: Gauge  # test
    drift_detected: Gauge
    anomalies: Counter  # kind


def make_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Every taskloop metric on ``registry`` (a new one when None), plus the standard
    ``process_*`` metrics (CPU seconds, open files, memory) where the platform has them."""
    reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=reg)
    return Metrics(
        registry=reg,
        request_seconds=Histogram(
            "taskloop_request_seconds",
            "HTTP request latency by route template, method and status.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ),
        task_seconds=Histogram(
            "taskloop_task_seconds",
            "Time to answer one task item (generate + verify) by task and model.",
            ("task", "model"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ),
        requests=Counter(
            "taskloop_requests",
            "HTTP requests by route template and status.",
            ("route", "status"),
            registry=reg,
        ),
        predictions=Counter(
            "taskloop_predictions",
            "Predictions by task and status (ok, flagged, failed, skipped).",
            ("task", "status"),
            registry=reg,
        ),
        verification_failures=Counter(
            "taskloop_verification_failures",
            "Failed error-severity verification checks by task and check name.",
            ("task", "check"),
            registry=reg,
        ),
        errors=Counter(
            "taskloop_errors",
            "Errors by type (exception class or error code).",
            ("type",),
            registry=reg,
        ),
        batch_size=Histogram(
            "taskloop_batch_size",
            "Items per generation batch by model.",
            ("model",),
            buckets=BATCH_BUCKETS,
            registry=reg,
        ),
        queue_depth=Gauge(
            "taskloop_queue_depth",
            "Requests waiting in the batching queue by model.",
            ("model",),
            registry=reg,
        ),
        feedback=Counter(
            "taskloop_feedback",
            "Feedback received by kind and value (thumbs/up, score/4, preference/a ...).",
            ("kind", "value"),
            registry=reg,
        ),
        resident_bytes=Gauge(
            "taskloop_process_resident_bytes",
            "Resident memory of this process in bytes.",
            registry=reg,
        ),
        gpu_memory_bytes=Gauge(
            "taskloop_gpu_memory_bytes",
            "GPU memory reserved by PyTorch's allocator, by device (only with CUDA).",
            ("device",),
            registry=reg,
        ),
        drift_p_value=Gauge(
            "taskloop_drift_p_value",
            "Bonferroni-corrected p-value of the last input-drift check, by test.",
            ("test",),
            registry=reg,
        ),
        drift_detected=Gauge(
            "taskloop_drift_detected",
            "1 when the last input-drift check found drift, else 0.",
            registry=reg,
        ),
        anomalies=Counter(
            "taskloop_anomalies",
            "Anomaly events (latency_spike, empty_outputs, error_burst) by kind.",
            ("kind",),
            registry=reg,
        ),
    )


def observe_request(m: Metrics, route: str, method: str, status: int | str, seconds: float) -> None:
    """Count one HTTP request and its latency under its route template."""
    code = str(status)
    m.requests.labels(route=route, status=code).inc()
    m.request_seconds.labels(route=route, method=method.upper(), status=code).observe(seconds)


def observe_prediction(
    m: Metrics,
    task: str,
    model: str | None,
    status: str,
    seconds: float,
    failed_checks: Iterable[str] = (),
) -> None:
    """Count one prediction by status, its latency, and each failed check by name."""
    m.predictions.labels(task=task, status=status).inc()
    m.task_seconds.labels(task=task, model=model or "none").observe(seconds)
    for check in failed_checks:
        m.verification_failures.labels(task=task, check=check).inc()


def observe_feedback(m: Metrics, kind: str, value: str | int | None) -> None:
    """Count one rating: ``("thumbs", "up")``, ``("score", 4)``, ``("preference", "a")``;
    a comment has no value (``None`` → ``"none"``)."""
    m.feedback.labels(kind=kind, value="none" if value is None else str(value)).inc()


def observe_error(m: Metrics, type: str) -> None:
    """Count one error of ``type`` (an exception class name or an error code)."""
    m.errors.labels(type=type).inc()


def observe_batch(m: Metrics, model: str, size: int) -> None:
    """Record the size of one generation batch of ``model``."""
    m.batch_size.labels(model=model).observe(size)


def set_queue_depth(m: Metrics, model: str, n: int) -> None:
    """Set how many requests wait in ``model``'s batching queue."""
    m.queue_depth.labels(model=model).set(n)


def update_process(m: Metrics) -> None:
    """Refresh resident memory and, when PyTorch is already loaded with CUDA, GPU memory.

    torch is never imported here: a service without it must not pay seconds of import
    for a gauge, and an uninitialised CUDA context is not created either
    (``memory_reserved`` reads allocator stats and returns 0 before first use).
    """
    m.resident_bytes.set(rss_mb() * 2**20)
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if not torch.cuda.is_available():
            return
        for i in range(torch.cuda.device_count()):
            m.gpu_memory_bytes.labels(device=f"cuda:{i}").set(torch.cuda.memory_reserved(i))
    except Exception:  # noqa: S110 - a broken driver must not break /metrics
        pass


def render(m: Metrics) -> tuple[bytes, str]:
    """The ``/metrics`` body (process gauges refreshed first) and its content type."""
    update_process(m)
    return generate_latest(m.registry), CONTENT_TYPE_LATEST


def route_label(scope: Scope) -> str:
    """The template of the route that served ``scope`` (``/v1/tasks/{task}``), or
    ``unmatched``: raw paths would give one time series per URL anyone tries."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED_ROUTE


class _MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and records it by route template.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so streaming responses and background
    tasks pass through untouched.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, anomalies: AnomalyDetector | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.anomalies = anomalies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before responding
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # status stays 500 unless the response had already started
            observe_error(self.metrics, type(exc).__name__)
            raise
        finally:
            seconds = time.perf_counter() - start
            route = route_label(scope)
            observe_request(self.metrics, route, scope.get("method", "GET"), status, seconds)
            if self.anomalies is not None:
                self.anomalies.observe_latency(route, seconds)
                if status >= 500:
                    self.anomalies.observe_error(route, str(status))


def inference_monitoring(
    app: Any, metrics: Metrics, *, anomalies: AnomalyDetector | None = None
) -> None:
    """Add the request middleware to a FastAPI (or Starlette) ``app``.

    Every HTTP request is counted and timed by route template, method and status; an
    unhandled exception counts as a 500 and as an error of its class. With
    ``anomalies``, each request's latency and each 5xx also feed the anomaly detector
    (keyed by route).
    """
    app.add_middleware(_MetricsMiddleware, metrics=metrics, anomalies=anomalies)
