"""POST /v1/tasks/{task}: one task row in, a verified answer out (batched, stored)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path

from taskloop.data.records import TaskName
from taskloop.serve.auth import TasksRun
from taskloop.serve.deps import ServiceDep
from taskloop.serve.ratelimit import rate_limited
from taskloop.serve.schemas import CheckOut, Problem, TaskOut
from taskloop.serve.service import predict

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], dependencies=[Depends(rate_limited)])

EXAMPLE_ROWS: dict[str, dict[str, Any]] = {
    "qa": {
        "question": "Which river flows through Vienna?",
        "context": "Vienna lies on the Danube, in the east of Austria.",
    },
    "summarize": {
        "document": "The council met on Monday. It voted to build twelve "
        "kilometres of cycling lanes. Work starts in May."
    },
    "translate": {
        "source": "A dog runs across the meadow.",
        "source_lang": "en",
        "target_lang": "de",
    },
    "codegen": {
        "prompt": 'def add(a: int, b: int) -> int:\n    """Return a + b.\n\n'
        '    >>> add(2, 3)\n    5\n    """\n',
        "completion": "    return a + b\n",
    },
}


@router.post(
    "/{task}",
    response_model=TaskOut,
    responses={422: {"model": Problem}, 503: {"model": Problem}},
    summary="Run one task row and verify the answer",
)
async def run_task(
    task: Annotated[TaskName, Path(description="codegen, qa, summarize or translate")],
    row: Annotated[
        dict[str, Any],
        Body(
            description="a task row (docs/task-format.md)",
            openapi_examples={k: {"value": v} for k, v in EXAMPLE_ROWS.items()},
        ),
    ],
    principal: TasksRun,
    service: ServiceDep,
) -> TaskOut:
    """The row is validated like a task-file row, answered by the task's model (batched
    with concurrent requests for the same task), checked, stored with its id, model
    version, input hash, checks and latency, and returned."""
    rec = await predict(service, task, row, principal.name)
    return TaskOut(
        prediction_id=rec.id,
        task=rec.task,
        output=rec.output,
        status=rec.status,
        checks=[CheckOut(**c) for c in rec.checks],
        scores=rec.scores,
        model=rec.model,
        latency_ms=rec.latency_ms,
    )
