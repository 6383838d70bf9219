"""The service benchmarks still run: ``serve_http_batching.py`` and ``serve_load.py`` in
their smoke settings against a real ``taskloop serve`` subprocess, plus their pure helpers.

No timing is asserted; what is asserted holds on any machine: every request answered,
batching off means batches of one, feedback rows stored equal ratings acknowledged.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _import(name: str) -> Any:
    """A benchmark script as a module (they import ``machine`` from beside themselves)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


batching = _import("serve_http_batching")
load = _import("serve_load")
_tag, percentile, qa_rows = batching._tag, batching.percentile, batching.qa_rows
rating = load.rating

POSTGRES_ENV = "TASKLOOP_TEST_POSTGRES_URL"


def _run(script: str, *args: str, timeout: int = 240) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _table_row(out: str, *cells: str) -> list[str]:
    """The cells of the first markdown row starting with ``cells``."""
    for line in out.splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if parts[: len(cells)] == list(cells):
            return parts
    raise AssertionError(f"no row {cells} in:\n{out}")


# --- helpers ---------------------------------------------------------------------------------


def test_tag_marks_every_sentence() -> None:
    """Each sentence gets `` [k]`` before its final stop, a stop-less tail at its end:
    "A b. C d? E" with k=3 -> "A b [3]. C d [3]? E [3]"."""
    assert _tag("A b. C d? E", 3) == "A b [3]. C d [3]? E [3]"


def test_qa_rows_do_not_repeat_and_do_not_depend_on_the_slice() -> None:
    """Row k is the k-th of one seeded sequence: rows 2..3 read alone equal rows 2..3 of
    0..4; with two base pairs, rows 0 and 2 share a pair but not a text (tags 0 and 2)."""
    pairs = [("Who? ", "X met Y."), ("Where?", "Z is in W.")]
    whole = qa_rows(5, seed=1, pairs=pairs)
    assert qa_rows(2, seed=1, start=2, pairs=pairs) == whole[2:4]
    questions = [r["question"] for r in whole]
    contexts = [r["context"] for r in whole]
    assert len(set(questions)) == len(set(contexts)) == 5
    assert whole[2]["context"].endswith(" [2].")


def test_percentile_is_nearest_rank() -> None:
    """Of 1..10: p50 is the ceil(0.50*10)=5th value, 5; p99 the ceil(0.99*10)=10th, 10."""
    xs = [float(x) for x in range(10, 0, -1)]
    assert percentile(xs, 50) == 5.0
    assert percentile(xs, 99) == 10.0


def test_ratings_rotate_through_every_kind() -> None:
    """n=0..3: thumbs up, score 1, comment, preference "a" (turn 0); n=4: thumbs down
    (turn 1); n=5: score 2; a preference with one answer becomes thumbs."""
    two = ["p1", "p2"]
    assert rating(0, two) == {"prediction_id": "p2", "kind": "thumbs", "thumbs": "up"}
    assert rating(1, two) == {"prediction_id": "p2", "kind": "score", "score": 1}
    assert rating(2, two)["kind"] == "comment"
    assert rating(3, two) == {
        "prediction_id": "p2",
        "kind": "preference",
        "other_prediction_id": "p1",
        "preferred": "a",
    }
    assert rating(4, two)["thumbs"] == "down"
    assert rating(5, two)["score"] == 2
    assert rating(3, ["p1"])["kind"] == "thumbs"


# --- smoke runs -------------------------------------------------------------------------------


def test_http_batching_benchmark_runs(tmp_path: Path) -> None:
    out = _run("serve_http_batching.py", "--smoke", "--work-dir", str(tmp_path))
    assert "| model / task | clients | batching | requests | req/s | p50 ms | p99 ms |" in out
    assert out.startswith("machine: ")
    for clients in ("1", "4"):
        for mode in ("off", "on"):
            row = _table_row(
                out, "qa (offline default: all-MiniLM-L6-v2 extractive)", clients, mode
            )
            requests, errors = row[3], row[7]
            assert requests == str(int(clients) * 3) and errors == "0", row
            if mode == "off":
                # Batching off: every batch holds one request, so sum / count = 1.
                assert row[8] == "1.00", row
    # Both servers ran in the work dir and logged there.
    assert (tmp_path / "batching-off" / "serve.log").is_file()
    assert (tmp_path / "batching-on" / "serve.log").is_file()


def _check_load_output(out: str) -> None:
    assert "| endpoint | sent | 2xx | errors | req/s | p50 ms | p99 ms | max ms |" in out
    assert "feedback rows stored == acknowledged: yes" in out
    row = _table_row(out, "feedback rows (201 vs rows)")
    acked, stored = int(row[1]), int(row[2])
    assert acked == stored > 0, row
    # The server counted the same ratings as 201 on its /metrics.
    assert _table_row(out, "/v1/feedback", "201")[2] == str(acked)
    qa = _table_row(out, "POST /v1/tasks/qa")
    assert int(qa[1]) == int(qa[2]) > 0, qa  # every question answered


def test_load_benchmark_runs_with_httpx(tmp_path: Path) -> None:
    out = _run("serve_load.py", "--smoke", "--engine", "httpx", "--work-dir", str(tmp_path))
    assert "httpx open loop" in out
    _check_load_output(out)


def _locust() -> str | None:
    for c in (
        os.environ.get("TASKLOOP_LOCUST", ""),
        str(Path(sys.executable).parent / "locust"),
        shutil.which("locust") or "",
    ):
        if c and Path(c).is_file():
            return c
    return None


def test_load_benchmark_runs_with_locust(tmp_path: Path) -> None:
    locust = _locust()
    if locust is None:
        pytest.skip(
            "locust is not installed (a benchmark tool, not a taskloop dependency): "
            "pip install locust, or set TASKLOOP_LOCUST to its executable"
        )
    out = _run("serve_load.py", "--smoke", "--locust", locust, "--work-dir", str(tmp_path))
    assert "locust headless" in out
    _check_load_output(out)


@pytest.mark.postgres
def test_load_benchmark_runs_on_postgres(tmp_path: Path) -> None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (a PostgreSQL database to run against)")
    out = _run(
        "serve_load.py",
        "--smoke",
        "--engine",
        "httpx",
        "--database-url",
        url,
        "--work-dir",
        str(tmp_path),
    )
    assert "database PostgreSQL" in out
    _check_load_output(out)
    # The run's schema is gone afterwards.
    schema = re.search(r"fresh schema (bench_[0-9a-f]+)", out)
    assert schema is not None, out
    from sqlalchemy import create_engine, text

    from taskloop.serve.storage.db import normalize_url

    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"),
                {"s": schema.group(1)},
            ).scalar_one()
    finally:
        engine.dispose()
    assert found == 0
