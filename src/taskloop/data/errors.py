"""Errors of task data loading, with stable codes."""

from __future__ import annotations

from pydantic import ValidationError

from taskloop.errors import ExitStatus, TaskloopError


def first_error(exc: ValidationError) -> tuple[str, str, str]:
    """The first problem pydantic found: (dotted field path, message, error type)."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"], first["type"]


class DataError(TaskloopError):
    """Base of task-data errors."""

    code = "data.error"
    exit_status = ExitStatus.CORRUPT


class ManifestError(DataError):
    """``manifest.json`` is not valid (bad JSON, unknown option, missing file)."""

    code = "data.manifest"


class NoTasksError(DataError):
    """The input holds no usable task rows."""

    code = "data.no_tasks"
