"""Structured logging: one record per processing step, as text for people or JSON for machines.

Library code wraps each step in :func:`step`; the record carries the step name, its
duration and whatever sizes the step adds. ``configure`` is called once by the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("taskloop")

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``step decode 12.3 ms in_bytes=1.2 MB out_bytes=...`` for steps, the message otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        parts = [f"{record.levelname.lower():7s} {record.getMessage()}"]
        for key, value in fields.items():
            if key == "step":
                continue
            if key.endswith("_bytes") and isinstance(value, int):
                value = human_bytes(value)
            parts.append(f"{key}={value}")
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        return text


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to ``sys.stderr`` as it is at that moment: a CLI runner (or a
    test harness) swaps stderr and closes its copy afterwards, and a handler that kept
    the old stream would then fail on every record ("--- Logging error ---")."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(level: int = logging.INFO, fmt: str = "text", stream: Any = None) -> None:
    """Send taskloop's records to ``stream`` (default: the current stderr) in ``fmt``
    ("text" or "json")."""
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def rss_mb() -> float:
    """This process's resident memory now, in MiB (peak RSS where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_bytes().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@contextmanager
def step(name: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Log one record for a processing step when it ends, with its duration.

    The caller adds sizes to the yielded dict (``info["out_bytes"] = n``). On failure the
    record says so at info level and the traceback goes to debug.
    """
    info: dict[str, Any] = dict(fields)
    start = time.perf_counter()
    try:
        yield info
    except BaseException as exc:
        info["duration_ms"] = round((time.perf_counter() - start) * 1000, 2)
        info["error"] = getattr(exc, "code", type(exc).__name__)
        logger.info("step %s failed", name, extra={"step": name, **info})
        logger.debug("step %s traceback", name, exc_info=True, extra={"step": name})
        raise
    info["duration_ms"] = round((time.perf_counter() - start) * 1000, 2)
    info["rss_mb"] = rss_mb()
    logger.info("step %s", name, extra={"step": name, **info})
