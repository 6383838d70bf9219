"""Errors of task data loading, with stable codes."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from taskloop.errors import ExitStatus, TaskloopError

M = TypeVar("M", bound=BaseModel)


def first_error(exc: ValidationError) -> tuple[str, str, str]:
    """The first problem pydantic found: (dotted field path, message, error type)."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"], first["type"]


def validated(model: type[M], data: Any, *, error: type[TaskloopError], where: str, hint: str) -> M:
    """``data`` validated as ``model``; the first problem raises ``error`` with the message
    ``{where}{dotted key}: {problem}`` (``where`` ends with ": " or ".").

    Raises:
        error: the data does not validate (an unknown key, a bad value).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, msg, _ = first_error(exc)
        raise error(f"{where}{loc}: {msg}", hint=hint) from None


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
