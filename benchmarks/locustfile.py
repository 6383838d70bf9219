"""Locust users for ``benchmarks/serve_load.py``: ask a question, rate the answer, repeat.

Not run on its own: ``serve_load.py`` starts the server, writes the inputs and runs
``locust --headless -f benchmarks/locustfile.py`` with these environment variables:

- ``TASKLOOP_LOAD_TOKEN``: a bearer token with ``tasks:run`` and ``feedback:write``.
- ``TASKLOOP_LOAD_ROWS``: a JSONL file of QA rows (``{"question", "context"}``), each sent
  once (rows are taken in turn by all users).
- ``TASKLOOP_LOAD_RATE``: requests per second, both endpoints together.
- ``TASKLOOP_LOAD_USERS``: how many users locust runs (``--users``).
- ``TASKLOOP_LOAD_OUT``: where every request (endpoint, ms, status, error, time) and the
  ids of acknowledged (201) ratings are written as JSON when locust quits.

A fixed arrival rate: each user runs one request every ``USERS / RATE`` seconds on a fixed
schedule, the users' first requests ``1 / RATE`` s apart, so requests start at ``RATE``
per second as long as each one takes less than that interval (``serve_load.py`` gives the
users 4 s; a late user catches up at once, and the report gives the rate reached).
Odd turns ``POST /v1/tasks/qa``; even turns ``POST /v1/feedback`` on the user's latest
answer, the kinds in rotation: thumbs (up, down), a 1-5 score, a comment, a preference
between the user's last two answers.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

import gevent
from locust import FastHttpUser, events, task

RATE = float(os.environ.get("TASKLOOP_LOAD_RATE", "20"))
USERS = int(os.environ.get("TASKLOOP_LOAD_USERS", "40"))
TOKEN = os.environ.get("TASKLOOP_LOAD_TOKEN", "")
ROWS_PATH = os.environ.get("TASKLOOP_LOAD_ROWS", "")
OUT_PATH = os.environ.get("TASKLOOP_LOAD_OUT", "")

QA = "POST /v1/tasks/qa"
FEEDBACK = "POST /v1/feedback"
KINDS = ("thumbs", "score", "comment", "preference")

ROWS: list[dict[str, str]] = []
if ROWS_PATH:
    with open(ROWS_PATH, encoding="utf-8") as fh:
        ROWS = [json.loads(line) for line in fh if line.strip()]
_next_row = itertools.count()
_next_user = itertools.count()
_next_rating = itertools.count()
_start: list[float] = []  # when the first user started (all users pace from it)
RECORDS: list[tuple[str, float, int, str, float]] = []  # endpoint, ms, status, error, start
ACKED: list[int] = []  # ids of ratings answered 201


@events.request.add_listener
def _record(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    response: Any = None,
    exception: BaseException | None = None,
    **kwargs: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    error = "" if exception is None else type(exception).__name__
    # The event fires when the answer is in: the request started response_time ms ago.
    RECORDS.append((name, float(response_time), status, error, time.time() - response_time / 1000))


@events.quitting.add_listener
def _write(**kwargs: Any) -> None:
    if OUT_PATH:
        with open(OUT_PATH, "w", encoding="utf-8") as fh:
            json.dump({"records": RECORDS, "acked_feedback_ids": ACKED}, fh)


def rating(n: int, answers: list[str]) -> dict[str, Any]:
    """The ``n``-th rating of the run, on the latest of ``answers`` (a preference needs two;
    with one answer it becomes thumbs)."""
    kind = KINDS[n % len(KINDS)]
    if kind == "preference" and len(answers) < 2:
        kind = "thumbs"
    body: dict[str, Any] = {"prediction_id": answers[-1], "kind": kind}
    if kind == "thumbs":
        body["thumbs"] = "up" if (n // len(KINDS)) % 2 == 0 else "down"
    elif kind == "score":
        body["score"] = 1 + (n // len(KINDS)) % 5
    elif kind == "comment":
        body["comment"] = f"load test rating {n}: the answer names the right span"
    else:
        body["other_prediction_id"] = answers[-2]
        body["preferred"] = ("a", "b", "tie")[(n // len(KINDS)) % 3]
    return body


class Rater(FastHttpUser):
    """Asks a question, then rates the answer; one request per pacing interval."""

    network_timeout = 120.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.answers: list[str] = []
        self.turn = 0
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        index = next(_next_user)
        if not _start:
            _start.append(time.monotonic())
        # User i's k-th request is due at start + i / RATE + k * USERS / RATE: together
        # the users' requests are due every 1 / RATE seconds.
        self.due = _start[0] + index / RATE
        gevent.sleep(max(0.0, self.due - time.monotonic()))

    def wait_time(self) -> float:
        """Until this user's next request is due; 0 when it is late (it catches up).

        Like locust's ``constant_pacing``, but anchored to the schedule: that one measures
        its first interval from the user's start and so fires the second request at once.
        """
        self.due += USERS / RATE
        return max(0.0, self.due - time.monotonic())

    @task
    def step(self) -> None:
        self.turn += 1
        if self.turn % 2 == 1 or not self.answers:
            self.ask()
        else:
            self.rate()

    def ask(self) -> None:
        row = ROWS[next(_next_row) % len(ROWS)]
        with self.client.post(
            "/v1/tasks/qa", json=row, headers=self.headers, name=QA, catch_response=True
        ) as r:
            if r.status_code == 200:
                self.answers = [*self.answers[-1:], r.json()["prediction_id"]]
                r.success()
            else:
                r.failure(f"status {r.status_code}")

    def rate(self) -> None:
        body = rating(next(_next_rating), self.answers)
        with self.client.post(
            "/v1/feedback", json=body, headers=self.headers, name=FEEDBACK, catch_response=True
        ) as r:
            if r.status_code == 201:
                ACKED.append(int(r.json()["id"]))
                r.success()
            else:
                r.failure(f"status {r.status_code}")
