"""Errors of model loading and generation, with stable codes."""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


class ModelError(TaskloopError):
    """Base of model errors."""

    code = "model.error"
    exit_status = ExitStatus.USAGE


class ModelNotFoundError(ModelError):
    """A model id or path cannot be resolved to files on this machine."""

    code = "model.not_found"


class ModelKindError(ModelError):
    """The model is not of a kind the task can use (e.g. an encoder for generation)."""

    code = "model.kind"


class DeviceError(ModelError):
    """The requested device or dtype is not available here."""

    code = "model.device"
