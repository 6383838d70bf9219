"""What the service does, apart from HTTP: run a task row (batched), store the prediction,
run a blob as a job. Routers call these; they know nothing about requests or responses.

One :class:`Service` per app holds the shared pieces: settings, the task resources
(generation cache, device, encoder), the dynamic batcher, the database sessions, the
metrics and the drift monitor.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloop.data.loader import validate_row
from taskloop.data.records import TASKS, Example, Prediction, TaskName, Where
from taskloop.monitor.drift import example_text
from taskloop.serve.errors import ServeError
from taskloop.serve.records import JobRecord, PredictionRecord
from taskloop.serve.settings import ServeSettings
from taskloop.tasks.context import FileOptions, Resources, TaskContext

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from taskloop.monitor.drift import DriftMonitor
    from taskloop.monitor.events import AnomalyDetector
    from taskloop.monitor.metrics import Metrics
    from taskloop.serve.batching import DynamicBatcher

REQUEST_FILE = "request"  # the `file` of examples that came in over HTTP


class BadRow(ServeError):
    """A task row that does not validate (the message names the field)."""

    code = "serve.bad_row"


@dataclass
class Service:
    """The shared state of one running service."""

    settings: ServeSettings
    resources: Resources
    sessions: sessionmaker[Any]
    metrics: Metrics
    batcher: DynamicBatcher[Example, Prediction]
    drift: DriftMonitor | None = None
    anomalies: AnomalyDetector | None = None
    ready: bool = False
    _drift_running: threading.Lock = field(default_factory=threading.Lock, repr=False)
    loaded: dict[str, str] = field(default_factory=dict)  # task -> model description


def parse_row(task: str, row: dict[str, Any]) -> Example:
    """The validated example of one task row.

    Raises:
        BadRow: an unknown task or a row that fails validation (field named).
    """
    if task not in TASKS:
        raise BadRow(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    example, error = validate_row(task, dict(row), Where(file=REQUEST_FILE, row=1))
    if example is None:
        assert error is not None
        raise BadRow(
            f"{task} row: {error.field + ': ' if error.field else ''}{error.message}",
            hint="see docs/task-format.md for each task's fields",
        )
    return example


def options_for(settings: ServeSettings, task: TaskName) -> FileOptions:
    """The options a served task runs with: its configured model, else the defaults."""
    return FileOptions(task=task, model=settings.models.get(task))


def run_batch(service: Service, task: str, examples: Sequence[Example]) -> list[Prediction]:
    """One task module call for a batch of rows (what the batcher runs in its thread)."""
    from taskloop.tasks import task_module

    ctx = TaskContext(
        file=REQUEST_FILE,
        options=options_for(service.settings, examples[0].task),
        resources=service.resources,
    )
    # Ids must be unique within a call: the task modules align outputs by id.
    unique = [ex.model_copy(update={"id": f"{i}"}) for i, ex in enumerate(examples)]
    predictions = task_module(examples[0].task).run(unique, ctx)
    by_id = {p.id: p for p in predictions}
    return [by_id[str(i)] for i in range(len(unique))]


async def predict(
    service: Service, task: str, row: dict[str, Any], principal: str
) -> PredictionRecord:
    """Validate, run (batched with concurrent requests), store and return one prediction.

    Raises:
        BadRow: the row does not validate.
        QueueFull: the task's queue is full (the caller answers 503 with Retry-After).
    """
    from taskloop.monitor.metrics import observe_prediction
    from taskloop.serve.storage import repo
    from taskloop.serve.storage.db import session_scope

    example = parse_row(task, row)
    start = time.perf_counter()
    prediction: Prediction = await service.batcher.submit(example.task, example)
    latency = time.perf_counter() - start
    record = PredictionRecord(
        id=uuid.uuid4().hex,
        task=example.task,
        model=prediction.model,
        model_version=_version(prediction.model),
        input_hash=repo.hash_input(row),
        input=row,
        output=prediction.output,
        status=prediction.status,
        checks=[c.model_dump() for c in prediction.checks],
        scores=stored_scores(prediction),
        latency_ms=round(latency * 1000, 3),
        principal=principal,
        created=datetime.now(UTC),
    )
    with session_scope(service.sessions) as s:
        repo.add_prediction(s, record)
    observe_prediction(
        service.metrics,
        example.task,
        prediction.model or "none",
        prediction.status,
        latency,
        [c.name for c in prediction.failed_checks()],
    )
    if service.anomalies is not None:
        service.anomalies.observe_output(example.task, prediction.output)
    if service.drift is not None:
        service.drift.add(example_text(example))
        check_drift_soon(service)
    return record


def stored_scores(prediction: Prediction) -> dict[str, float]:
    """The scores stored with a prediction: the task's scores plus its ``confidence``
    detail when it has one (QA), which active learning reads as a signal."""
    scores = dict(prediction.scores)
    confidence = prediction.details.get("confidence")
    if isinstance(confidence, int | float) and "confidence" not in scores:
        scores["confidence"] = float(confidence)
    return scores


def check_drift_soon(service: Service) -> None:
    """Run the drift check in a background thread (it embeds two windows: seconds, not
    for the request path) once a quarter of the window is new since the last check; at
    most one check at a time, skipped while one runs. Checking after every request would
    keep a core busy under load for windows that barely changed."""
    monitor = service.drift
    if monitor is None or monitor.new_since_check < max(1, monitor.window // 4):
        return
    if not service._drift_running.acquire(blocking=False):
        return

    def work() -> None:
        try:
            monitor.check()
        except Exception:
            from taskloop.log import logger

            logger.warning("drift check failed", exc_info=True, extra={"event": "drift_error"})
        finally:
            service._drift_running.release()

    threading.Thread(target=work, name="taskloop-drift", daemon=True).start()


def _version(model: str | None) -> str | None:
    """The version part of a model description ``name@version (kind, device)``."""
    if not model or "@" not in model:
        return None
    return model.rsplit("@", 1)[1].split(" ", 1)[0]  # models:/NAME@ALIAS@HASH: the hash


def run_blob_job(service: Service, job_id: str, blob: str) -> None:
    """Run a blob through the main pipeline and store the result blob on the job.

    Runs in a worker thread (a background task); every failure ends up on the job.
    """
    from taskloop.pipeline import run
    from taskloop.runconfig import RunConfig
    from taskloop.serve.storage import repo
    from taskloop.serve.storage.db import session_scope

    with session_scope(service.sessions) as s:
        repo.update_job(s, job_id, status="running")
    try:
        with tempfile.TemporaryDirectory(prefix="taskloop-job-") as tmp:
            path = Path(tmp) / "input.blob"
            path.write_text(blob, encoding="utf-8")
            cfg = RunConfig.model_validate(
                {"models": dict(service.settings.models), "device": service.resources.device}
            )
            result = run(path, Path(tmp) / "out", cfg)
            result_blob = (Path(tmp) / "out" / "result.blob").read_text(encoding="ascii")
        summary = {
            "counts": result.report.counts,
            "tasks": [
                {"task": t.task, "file": t.file, "metrics": t.metrics, "counts": t.counts}
                for t in result.report.tasks
            ],
            "row_errors": len(result.report.row_errors),
        }
        with session_scope(service.sessions) as s:
            repo.update_job(s, job_id, status="done", result=result_blob, summary=summary)
    except Exception as exc:
        from taskloop.errors import TaskloopError

        message = str(exc) if isinstance(exc, TaskloopError) else f"{type(exc).__name__}: {exc}"
        with session_scope(service.sessions) as s:
            repo.update_job(s, job_id, status="failed", error=message)


def new_job(service: Service, principal: str) -> JobRecord:
    """A queued job for ``principal``."""
    from taskloop.serve.storage import repo
    from taskloop.serve.storage.db import session_scope

    with session_scope(service.sessions) as s:
        return repo.create_job(s, uuid.uuid4().hex, principal)
