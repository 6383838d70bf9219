"""Structured logging: one record per step, as text or JSON, tracebacks only at debug."""

from __future__ import annotations

import io
import json
import logging

import pytest

from taskloop.blob import BlobError, NotAZipError
from taskloop.log import configure, human_bytes, logger, step


@pytest.fixture
def stream():
    buf = io.StringIO()
    yield buf
    logger.handlers.clear()


def test_step_logs_name_duration_and_sizes_as_json(stream):
    configure(level=logging.INFO, fmt="json", stream=stream)
    with step("decode", in_bytes=10) as info:
        info["out_bytes"] = 7
    record = json.loads(stream.getvalue())
    assert record["step"] == "decode"
    assert record["in_bytes"] == 10 and record["out_bytes"] == 7
    assert isinstance(record["duration_ms"], float) and record["duration_ms"] >= 0
    assert record["level"] == "info"


def test_failed_step_logs_the_error_code_and_keeps_the_traceback_for_debug(stream):
    configure(level=logging.INFO, fmt="json", stream=stream)
    with pytest.raises(BlobError), step("verify"):
        raise NotAZipError("nope")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["msg"] for r in lines] == ["step verify failed"]
    assert lines[0]["error"] == "blob.not_zip"
    assert "traceback" not in lines[0]

    stream.seek(0)
    stream.truncate()
    configure(level=logging.DEBUG, fmt="json", stream=stream)
    with pytest.raises(BlobError), step("verify"):
        raise NotAZipError("nope")
    debug = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any("NotAZipError: nope" in r.get("traceback", "") for r in debug)


def test_text_format_is_one_readable_line(stream):
    configure(level=logging.INFO, fmt="text", stream=stream)
    with step("encode", in_bytes=2_500_000):
        pass
    line = stream.getvalue().strip()
    assert line.startswith("info    step encode in_bytes=2.5 MB duration_ms=")


def test_human_bytes():
    assert [human_bytes(n) for n in (999, 1000, 2_500_000, 3 * 10**12)] == [
        "999 B",
        "1.0 kB",
        "2.5 MB",
        "3000.0 GB",
    ]


def test_records_follow_stderr_when_it_is_swapped(monkeypatch, capsys):
    """A CLI runner swaps sys.stderr and closes its copy: later records must go to the
    stderr of their time, not fail on the closed stream."""
    import io
    import sys

    from taskloop.log import configure, logger

    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    configure(fmt="text")
    logger.info("first")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    swapped.close()
    logger.info("second")
    out = sys.stderr.getvalue()
    assert "Logging error" not in out and "second" in out
