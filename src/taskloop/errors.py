"""The root of taskloop's error hierarchy and the exit statuses the CLI maps errors to.

Every expected failure is a :class:`TaskloopError` with a stable ``code`` (a short
dotted string that never changes meaning once released) and an ``exit_status``. The CLI
prints ``error[code]: message`` plus an optional hint and exits with that status; the
traceback goes to the debug log only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit statuses of the ``taskloop`` CLI (documented in ``taskloop --help``)."""

    OK = 0
    INTERNAL = 1  # a bug: unexpected exception (traceback in the debug log)
    USAGE = 2  # bad command line (unknown option, missing argument)
    REPAIRED_WITH_LOSSES = 3  # output written, but some non-critical members were lost
    CORRUPT = 4  # input damaged beyond what the command may repair, or not a valid input
    UNSAFE = 5  # hostile archive: traversal, links, overlap, bombs, limits
    CRYPTO = 6  # key missing, wrong key, or tampered ciphertext
    IO = 7  # a file could not be read or written


EXIT_STATUS_HELP = """\
Exit statuses:
  0  success
  1  internal error (a bug; rerun with --debug and report it)
  2  usage error
  3  repaired with losses (output written; some non-critical members skipped or replaced)
  4  corrupt or unrecoverable input
  5  unsafe archive (path traversal, links, overlapping entries, zip bomb, limits)
  6  key missing, wrong key, or tampered ciphertext
  7  file could not be read or written"""


class TaskloopError(Exception):
    """Base of every expected taskloop error.

    Args:
        message: what went wrong and where (file, row, byte offset, member).
        hint: what the user can do next, shown under the message.
    """

    code: str = "taskloop.error"
    exit_status: ExitStatus = ExitStatus.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "code": self.code,
            "exit_status": int(self.exit_status),
            "message": self.message,
            "hint": self.hint,
        }


class InputFileError(TaskloopError):
    """A file named by the user cannot be read or written."""

    code = "io.file"
    exit_status = ExitStatus.IO
