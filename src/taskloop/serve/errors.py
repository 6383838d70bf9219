"""Errors of the service, its storage and its users/clients management, with stable codes."""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


class ServeError(TaskloopError):
    """Base of service errors."""

    code = "serve.error"
    exit_status = ExitStatus.USAGE


class ServeConfigError(ServeError):
    """A service setting (env ``TASKLOOP_SERVE_*``) is invalid."""

    code = "serve.config"


class StorageError(ServeError):
    """The database cannot be reached, migrated, or holds something unexpected."""

    code = "serve.storage"
    exit_status = ExitStatus.IO


class NotFoundError(ServeError):
    """A user, client, prediction or job that does not exist."""

    code = "serve.not_found"


class AuthError(ServeError):
    """Bad credentials, an invalid or expired token, or a missing scope."""

    code = "serve.auth"
