"""Errors of task data loading, with stable codes."""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


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
