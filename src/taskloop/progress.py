"""Progress of long work, reported to whoever displays it (the CLI shows a bar).

Library code calls :func:`start` when a phase begins and :func:`advance` as bytes are
done, from any thread; both are no-ops unless a reporter is installed with
:func:`reporting`. A process-wide reporter (not a context variable) so that worker
threads report too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Reporter(Protocol):
    def start(self, phase: str, total: int, unit: str = "bytes") -> None: ...

    def advance(self, n: int) -> None: ...


_reporter: Reporter | None = None
_lock = threading.Lock()


def start(phase: str, total: int, unit: str = "bytes") -> None:
    """A new phase of ``total`` units ("bytes", or "items" for examples and batches) begins."""
    reporter = _reporter
    if reporter is not None:
        with _lock:
            reporter.start(phase, total, unit)


def advance(n: int) -> None:
    reporter = _reporter
    if reporter is not None and n:
        with _lock:
            reporter.advance(n)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Install ``reporter`` for the duration of the block (None: report nothing)."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous
