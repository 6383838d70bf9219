"""Acknowledged feedback survives a SIGKILL of the writer, on SQLite and PostgreSQL.

A child process (crash_writer.py) adds ratings in a loop and prints each id only after
``add_feedback`` returned; the test kills it with SIGKILL at an arbitrary point of that
loop (after it acknowledged ``ACKS`` rows), reopens the database and checks that every
acknowledged id is stored. At most one more row may be stored than acknowledged: the
one committed between the COMMIT and the print when the kill landed there.

How this fails: if the writer acknowledged before committing (printing the id after
the INSERT, before the COMMIT, or if ``add_feedback`` returned without committing), the
kill can land between print and commit and that acknowledged row is missing.
``test_the_check_catches_an_ack_before_commit`` runs exactly that broken writer
(deterministically: it waits before its commit) and shows the check reports the row.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select, text

from taskloop.serve.storage import make_engine, repo, session_factory, session_scope, upgrade
from taskloop.serve.storage.tables import FeedbackRow
from tests.serve.test_storage import pred

WRITER = Path(__file__).with_name("crash_writer.py")
ACKS = 200  # rows acknowledged before the kill: enough to land mid-loop, fast on fsync


def _prepare(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    with session_scope(session_factory(engine)) as s:
        repo.add_prediction(s, pred("p1", "Ann"))
    engine.dispose()


def _run_and_kill(url: str, acks: int, *flags: str) -> list[int]:
    """Start the writer, read ``acks`` acknowledged ids, SIGKILL it; all ids it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), url, "p1", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(120, proc.kill)  # a hung writer must not hang the suite
    guard.start()
    try:
        assert proc.stdout is not None
        acked = []
        while len(acked) < acks and (line := proc.stdout.readline()):
            acked.append(int(line))
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=60)
    finally:
        guard.cancel()
    acked += [int(x) for x in rest.split()]  # printed before the kill, read after it
    assert proc.returncode == -signal.SIGKILL, f"the writer ended on its own:\n{err}"
    assert len(acked) >= acks, err
    return acked


def _stored_ids(url: str) -> set[int]:
    """The feedback ids in the database, opened afresh (and checked, on SQLite)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
            return set(conn.scalars(select(FeedbackRow.id)))
    finally:
        engine.dispose()


def test_acknowledged_feedback_survives_sigkill(db_url: str):
    _prepare(db_url)
    acked = _run_and_kill(db_url, ACKS)
    stored = _stored_ids(db_url)
    assert sorted(set(acked) - stored) == [], "acknowledged but lost"
    assert len(stored - set(acked)) <= 1, "stored rows nobody acknowledged, beyond the last"


def test_the_check_catches_an_ack_before_commit(db_url: str):
    """The broken writer prints its first id, then waits to commit; killed right after
    the print, that id is acknowledged (1) and not stored (none): the check above fails."""
    _prepare(db_url)
    acked = _run_and_kill(db_url, 1, "--ack-before-commit")
    assert acked == [1]
    assert _stored_ids(db_url) == set()
