"""Load test of ``taskloop serve`` on loopback: a fixed arrival rate for a minute, answers
rated as they arrive, and every acknowledged rating found in the database afterwards.

Starts ``taskloop serve`` as a subprocess (fresh ``TASKLOOP_HOME``, a free port, rate
limits raised out of the way) on SQLite in a temporary folder, or on ``--database-url``
(PostgreSQL: a fresh schema, dropped afterwards), with one user holding ``tasks:run`` and
``feedback:write``. Then sends ``--rate`` requests per second for ``--duration`` seconds,
half ``POST /v1/tasks/qa`` (distinct SQuAD questions, as in
``serve_http_batching.py``), half ``POST /v1/feedback`` on the answers just received:
thumbs up/down, a 1-5 score, a comment, a preference between two answers, in rotation.

Two load generators, same requests:

- ``locust`` (default when found): ``benchmarks/locustfile.py`` headless, ``4 * rate``
  users, each sending one request every 4 s on a fixed schedule, their starts spread
  ``1 / rate`` s apart: requests start at the fixed rate while answers take under 4 s.
  Locust is a benchmark tool, not a taskloop dependency: install it where it suits
  (``python -m venv /tmp/locust && /tmp/locust/bin/pip install locust``) and pass
  ``--locust /tmp/locust/bin/locust``, or have ``locust`` on PATH.
- ``httpx``: an asyncio open loop in this process (request ``i`` starts at ``i / rate``
  whatever is still outstanding): the fallback when locust is missing.

The server's torch runs on one CPU thread unless ``--torch-threads`` says otherwise (why:
``serve_http_batching.py``). When answers take longer than the locust users' interval the
users fall behind and fewer requests start than ``--rate`` asks; the report gives the
rate reached, and the httpx open loop queues instead.

At the end: requests per endpoint with p50/p99 latency, errors by status, the server's own
``/metrics`` request counters, and the check the issue asks for: feedback rows stored in
the server's database (SQLAlchemy, rows by this run's user) equal the ratings
acknowledged with 201, and every acknowledged id is among them. Exit status 1 when not.

::

    python benchmarks/serve_load.py --locust /tmp/locust/bin/locust        # 20 req/s, 60 s
    python benchmarks/serve_load.py --database-url \\
        postgresql+psycopg://taskloop:taskloop@localhost/taskloop_test
    python benchmarks/serve_load.py --engine httpx --rate 10 --duration 30
    python benchmarks/serve_load.py --smoke --engine httpx                 # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from machine import describe, work_dir  # benchmarks/machine.py, beside this script
from serve_http_batching import (
    SQUAD,
    Sample,
    Server,
    log,
    metric_total,
    percentile,
    qa_rows,
    read_metrics,
    running_server,
    squad_pairs,
    stop_on_sigterm,
)

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
QA = "POST /v1/tasks/qa"
FEEDBACK = "POST /v1/feedback"
KINDS = ("thumbs", "score", "comment", "preference")
PACING_S = 4.0  # locust: each user's interval; answers slower than this lower the rate

Record = tuple[str, float, int, str, float]  # endpoint, ms, status, error name, unix time


@dataclasses.dataclass
class LoadRun:
    engine: str
    records: list[Record]
    acked: list[int]  # ids of ratings answered 201
    seconds: float  # from the first request's start to the last answer


# --- databases ------------------------------------------------------------------------------


@contextmanager
def fresh_database(url: str | None) -> Iterator[str | None]:
    """``url`` as given (None: the server's SQLite file); for PostgreSQL a URL on a fresh
    schema (``search_path``), dropped afterwards, so a run never sees another's rows."""
    if url is None:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from taskloop.serve.storage.db import normalize_url

    parsed = normalize_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield url
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(parsed)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(parsed).update_query_dict({"options": f"-csearch_path={schema}"})
    log(f"PostgreSQL: fresh schema {schema} (dropped afterwards)")
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def stored_rows(database_url: str, user: str) -> tuple[list[int], int]:
    """Ids of the feedback rows ``user`` gave, and how many predictions it asked for."""
    from sqlalchemy import text

    from taskloop.serve.storage.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    text("SELECT id FROM feedback WHERE rater = :u"), {"u": user}
                ).scalars()
            ]
            predictions = conn.execute(
                text("SELECT count(*) FROM predictions WHERE principal = :u"), {"u": user}
            ).scalar_one()
    finally:
        engine.dispose()
    return ids, int(predictions)


def backend_name(database_url: str) -> str:
    from taskloop.serve.storage.db import normalize_url

    parsed = normalize_url(database_url)
    if parsed.get_backend_name() == "postgresql":
        return f"PostgreSQL ({parsed.host or 'localhost'}/{parsed.database})"
    return "SQLite (WAL, synchronous=FULL)"


# --- load generators ------------------------------------------------------------------------


def rating(n: int, answers: Sequence[str]) -> dict[str, Any]:
    """The ``n``-th rating on the latest answer (as ``locustfile.rating``; a preference
    needs two answers, with one it becomes thumbs)."""
    kind = KINDS[n % len(KINDS)]
    if kind == "preference" and len(answers) < 2:
        kind = "thumbs"
    body: dict[str, Any] = {"prediction_id": answers[-1], "kind": kind}
    turn = n // len(KINDS)
    if kind == "thumbs":
        body["thumbs"] = "up" if turn % 2 == 0 else "down"
    elif kind == "score":
        body["score"] = 1 + turn % 5
    elif kind == "comment":
        body["comment"] = f"load test rating {n}: the answer names the right span"
    else:
        body["other_prediction_id"] = answers[-2]
        body["preferred"] = ("a", "b", "tie")[turn % 3]
    return body


async def open_loop(
    server: Server, rows: list[dict[str, str]], rate: float, duration: float
) -> LoadRun:
    """Request ``i`` starts at ``i / rate`` s whatever is outstanding; even ones ask a
    question, odd ones rate the latest answer (or ask, before the first answer)."""
    records: list[Record] = []
    acked: list[int] = []
    answers: list[str] = []
    rated = 0
    next_row = 0
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        nonlocal rated, next_row
        if i % 2 == 0 or not answers:
            name, path, body = QA, "/v1/tasks/qa", rows[next_row % len(rows)]
            next_row += 1
        else:
            name, path, body = FEEDBACK, "/v1/feedback", rating(rated, answers)
            rated += 1
        start = time.perf_counter()
        wall = time.time()
        try:
            r = await http.post(path, json=body)
        except httpx.HTTPError as e:
            ms = 1000 * (time.perf_counter() - start)
            records.append((name, ms, 0, type(e).__name__, wall))
            return
        records.append((name, 1000 * (time.perf_counter() - start), r.status_code, "", wall))
        if name == QA and r.status_code == 200:
            answers[:] = [*answers[-1:], r.json()["prediction_id"]]
        elif name == FEEDBACK and r.status_code == 201:
            acked.append(int(r.json()["id"]))

    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=120, limits=limits
    ) as http:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = []
        for i in range(max(1, round(rate * duration))):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, i)))
        await asyncio.gather(*tasks)
        seconds = loop.time() - t0
    return LoadRun("httpx open loop (asyncio, one process)", records, acked, seconds)


def find_locust(given: str | None) -> tuple[str | None, str]:
    """The locust executable and how it was found, or None and why not."""
    candidates = [given] if given else []
    if not given:
        candidates += [os.environ.get("TASKLOOP_LOCUST", "")]
        candidates += [str(Path(sys.executable).parent / "locust"), shutil.which("locust") or ""]
    for c in filter(None, candidates):
        if Path(c).is_file() and os.access(c, os.X_OK):
            try:
                out = subprocess.run(
                    [c, "--version"], capture_output=True, text=True, timeout=60, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"{c} does not run: {e}"
            if out.returncode == 0:
                return c, out.stdout.strip().split(" from ")[0]
            return None, f"{c} --version failed: {(out.stdout + out.stderr).strip()[-300:]}"
    where = given or "TASKLOOP_LOCUST, beside this Python, or on PATH"
    return None, f"locust not found ({where}); pip install locust, then --locust PATH"


def run_locust(
    locust: str, server: Server, rows_path: Path, out: Path, rate: float, duration: float
) -> LoadRun:
    users = max(1, math.ceil(rate * PACING_S))
    env = dict(os.environ)
    env.update(
        {
            "TASKLOOP_LOAD_TOKEN": server.token,
            "TASKLOOP_LOAD_ROWS": str(rows_path),
            "TASKLOOP_LOAD_RATE": str(rate),
            "TASKLOOP_LOAD_USERS": str(users),
            "TASKLOOP_LOAD_OUT": str(out),
        }
    )
    cmd = [
        locust, "-f", str(LOCUSTFILE), "--headless", "--host", server.url,
        "--users", str(users), "--spawn-rate", str(max(users, 1)),
        "--run-time", f"{duration:g}s", "--stop-timeout", "120",
        "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration + 300, check=False
    )
    # locust exits 1 when any request failed; the failures are in the records.
    if proc.returncode not in (0, 1) or not out.is_file():
        raise SystemExit(
            f"locust failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    data = json.loads(out.read_text(encoding="utf-8"))
    records: list[Record] = [
        (str(r[0]), float(r[1]), int(r[2]), str(r[3]), float(r[4])) for r in data["records"]
    ]
    starts = [r[4] for r in records]
    ends = [r[4] + r[1] / 1000 for r in records]
    seconds = (max(ends) - min(starts)) if records else 0.0
    return LoadRun(
        f"locust headless, {users} users, one request every {users / rate:g} s each, FastHttpUser",
        records,
        [int(i) for i in data["acked_feedback_ids"]],
        seconds,
    )


# --- report ---------------------------------------------------------------------------------


def report_requests(run: LoadRun, duration: float) -> None:
    log("| endpoint | sent | 2xx | errors | req/s | p50 ms | p99 ms | max ms |")
    log("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in (QA, FEEDBACK, "all"):
        rs = [r for r in run.records if name in ("all", r[0])]
        ok = sum(200 <= r[2] < 300 for r in rs)
        ms = [r[1] for r in rs]
        log(
            f"| {name} | {len(rs)} | {ok} | {len(rs) - ok} | {len(rs) / duration:.1f} | "
            f"{percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} | {max(ms, default=0):.1f} |"
        )


def report_errors(run: LoadRun) -> int:
    errors: dict[tuple[str, str], int] = {}
    for name, _, status, error, _ in run.records:
        if not 200 <= status < 300:
            key = (name, str(status) if status else error or "no answer")
            errors[key] = errors.get(key, 0) + 1
    log("| endpoint | status | count |")
    log("|---|---|---:|")
    for (endpoint, what), n in sorted(errors.items()):
        log(f"| {endpoint} | {what} | {n} |")
    if not errors:
        log("| (all) | none | 0 |")
    return sum(errors.values())


def report_feedback(run: LoadRun, stored: list[int], predictions: int) -> bool:
    acked = set(run.acked)
    have = set(stored)
    missing = len(acked - have)
    extra = len(have - acked)
    answered = sum(r[0] == QA and r[2] == 200 for r in run.records)
    equal = len(stored) == len(run.acked) and not missing
    log("| check | sent (acknowledged) | stored in the database | missing | extra | equal |")
    log("|---|---:|---:|---:|---:|---|")
    log(
        f"| feedback rows (201 vs rows) | {len(run.acked)} | {len(stored)} | {missing} | "
        f"{extra} | {'yes' if equal else 'NO'} |"
    )
    log(
        f"| predictions (200 vs rows) | {answered} | {predictions} | - | - | "
        f"{'yes' if answered == predictions else 'no'} |"
    )
    return equal


def report_server(before: list[Sample], after: list[Sample]) -> None:
    """The server's own counters over the run: requests by route and status, ratings."""
    keys = sorted(
        {
            (labels.get("route", ""), labels.get("status", ""))
            for name, labels, _ in after
            if name == "taskloop_requests_total" and labels.get("route", "").startswith("/v1/")
        }
    )
    log("| route (server /metrics) | status | taskloop_requests_total (this run) |")
    log("|---|---|---:|")
    for route, status in keys:
        n = metric_total(after, "taskloop_requests_total", route=route, status=status)
        n -= metric_total(before, "taskloop_requests_total", route=route, status=status)
        if n:
            log(f"| {route} | {status} | {n:.0f} |")
    kinds = sorted(
        {labels["kind"] for name, labels, _ in after if name == "taskloop_feedback_total"}
    )
    counts = ", ".join(
        f"{k} {metric_total(after, 'taskloop_feedback_total', kind=k):.0f}" for k in kinds
    )
    log(f"\nserver taskloop_feedback_total by kind: {counts or 'none'}")
    n = metric_total(after, "taskloop_batch_size_count")
    if n:
        mean = metric_total(after, "taskloop_batch_size_sum") / n
        log(f"server batches: {n:.0f}, mean batch size {mean:.2f}")


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load test of taskloop serve on loopback at a fixed arrival rate: "
        "POST /v1/tasks/qa and POST /v1/feedback, latency, errors, and feedback rows "
        "stored vs acknowledged.",
    )
    parser.add_argument(
        "--rate", type=float, help="requests per second, both endpoints together (default 20)"
    )
    parser.add_argument("--duration", type=float, help="seconds of load (default 60)")
    parser.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="the server's database (default: SQLite in the work dir); PostgreSQL runs "
        "on a fresh schema, dropped afterwards",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "locust", "httpx"),
        default="auto",
        help="load generator: locust, httpx (open loop), auto: locust when found (default)",
    )
    parser.add_argument("--locust", default=None, metavar="PATH", help="the locust executable")
    parser.add_argument("--no-batching", action="store_true", help="serve without dynamic batching")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="server torch threads (OMP_NUM_THREADS); 0: torch's choice (default 1)",
    )
    parser.add_argument("--smoke", action="store_true", help="seconds: 8 req/s for 5 s")
    parser.add_argument("--data", type=Path, default=SQUAD, help="a SQuAD v2 JSON file")
    parser.add_argument("--seed", type=int, default=2024, help="input shuffle seed")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="server home, database, log (default: a temporary directory, removed)",
    )
    args = parser.parse_args(argv)
    args.rate = args.rate or (8.0 if args.smoke else 20.0)
    args.duration = args.duration or (5.0 if args.smoke else 60.0)
    if args.rate <= 0 or args.duration <= 0 or args.torch_threads < 0:
        parser.error("--rate and --duration must be > 0, --torch-threads >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    threads = f"server torch threads: {args.torch_threads or 'torch default'}"
    if not args.torch_threads:
        threads += f" (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    for line in describe(("fastapi", "uvicorn", "httpx", "sqlalchemy", "psycopg"), extra=threads):
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    locust, note = (None, "--engine httpx")
    if args.engine != "httpx":
        locust, note = find_locust(args.locust)
        if locust is None and args.engine == "locust":
            raise SystemExit(note)
        if locust is None:
            log(f"load generator: httpx open loop, because {note}")
    pairs, source = squad_pairs(args.data)
    rows = qa_rows(math.ceil(args.rate * args.duration) + 16, seed=args.seed, pairs=pairs)
    log(f"inputs: {len(rows)} distinct QA rows from {source}")
    user = f"load-{secrets.token_hex(4)}"
    settings = {"batching": "false" if args.no_batching else "true"}
    with (
        work_dir(args.work_dir, prefix="taskloop-serve-load-") as work,
        fresh_database(args.database_url) as database_url,
        running_server(
            work / "server",
            settings=settings,
            scopes=("tasks:run", "feedback:write"),
            database_url=database_url,
            user=user,
            torch_threads=args.torch_threads,
        ) as server,
    ):
        log(f"server: {server.url}, database {backend_name(server.database_url)}")
        before = read_metrics(server.url)
        if locust is not None:
            rows_path = work / "rows.jsonl"
            rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            log(f"load generator: {note} ({locust})")
            run = run_locust(
                locust, server, rows_path, work / "locust-out.json", args.rate, args.duration
            )
        else:
            run = asyncio.run(open_loop(server, rows, args.rate, args.duration))
        after = read_metrics(server.url)
        stored, predictions = stored_rows(server.database_url, user)
    log("")
    log(
        f"{args.rate:g} requests/s for {args.duration:g} s ({run.engine}); batching "
        f"{'off' if args.no_batching else 'on'}; requests alternate QA and a rating of the "
        f"latest answer. Load ran {run.seconds:.1f} s (first start to last answer); req/s "
        f"= sent / {args.duration:g} s; latency over all requests of the endpoint."
    )
    log("")
    report_requests(run, args.duration)
    log("")
    errors = report_errors(run)
    log("")
    equal = report_feedback(run, stored, predictions)
    log("")
    report_server(before, after)
    log(f"\nerrors: {errors}; feedback rows stored == acknowledged: {'yes' if equal else 'NO'}")
    if hasattr(os, "getloadavg"):
        log(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
