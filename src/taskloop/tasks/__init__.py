"""Task pipelines, one module per task, found through a plain dict.

Each task module exposes two functions:

``run(examples, ctx) -> list[Prediction]``
    prepare → generate → verify for the examples of one task file, one prediction per
    example in input order, never raising for a bad item (it becomes a "failed" or
    "skipped" prediction with a reason).
``score(examples, predictions) -> dict[str, float]``
    aggregate metrics over the items that have references.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol, cast

from taskloop.data.records import Prediction, TaskName

TASK_MODULES: dict[TaskName, str] = {
    "codegen": "taskloop.tasks.codegen",
    "qa": "taskloop.tasks.qa",
    "summarize": "taskloop.tasks.summarize",
    "translate": "taskloop.tasks.translate",
}


class TaskModule(Protocol):
    run: Callable[[Sequence[Any], Any], list[Prediction]]
    score: Callable[[Sequence[Any], Sequence[Prediction]], dict[str, float]]


def task_module(name: TaskName) -> TaskModule:
    """The module implementing task ``name`` (imported on first use)."""
    module: ModuleType = importlib.import_module(TASK_MODULES[name])
    return cast(TaskModule, module)
