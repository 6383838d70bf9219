"""The real server, killed with SIGKILL in the middle of a feedback load, loses no rating
it acknowledged (201), on SQLite and on PostgreSQL.

`taskloop serve` runs in a subprocess; four client threads post ratings as fast as it
answers and record the id of every 201. When enough are acknowledged, the server gets
SIGKILL while requests are still in flight. Every acknowledged id must then be in the
database. This fails if the feedback route answered before its transaction committed
(e.g. a repository function that flushed but left the commit to the end of the
request, after the response was sent).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from taskloop.serve.auth import create_token, hash_secret
from taskloop.serve.storage import make_engine, repo, session_factory, session_scope, upgrade
from tests.serve.test_storage import pred

SECRET = "crash-test-secret-long-enough-for-hs256"
ACKS = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    with session_scope(session_factory(engine)) as s:
        repo.add_prediction(s, pred("p1", "Ann"))
        repo.create_user(s, "rater", hash_secret("pw"), ["feedback:write"])
    engine.dispose()


def _start(url: str, port: int, home: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOP_")}
    env.update(
        TASKLOOP_HOME=str(home),
        TASKLOOP_SERVE_JWT_SECRET=SECRET,
        TASKLOOP_SERVE_RATE_PER_MINUTE="1000000",
        TASKLOOP_SERVE_RATE_BURST="100000",
    )
    cmd = [
        sys.executable,
        "-m",
        "taskloop",
        "-q",
        "serve",
        "--port",
        str(port),
        "--database-url",
        url,
        "--no-warm-up",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not become ready in 60 s")


@pytest.mark.slow
def test_acknowledged_feedback_survives_sigkill_of_the_server(db_url: str, tmp_path: Path):
    _prepare(db_url)
    port = _free_port()
    server = _start(db_url, port, tmp_path / "home")
    token, _ = create_token("rater", "user", ["feedback:write"], secret=SECRET)
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=10,
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            i = 0
            while not stop.is_set():
                i += 1
                body = {
                    "prediction_id": "p1",
                    "kind": "score",
                    "score": 1 + (i + n) % 5,
                    "comment": f"client {n} rating {i}",
                }
                try:
                    r = http.post("/v1/feedback", json=body)
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 201:
                    with lock:
                        acked.append(int(r.json()["id"]))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < ACKS and time.monotonic() < deadline:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)  # requests are still in flight
    server.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= ACKS, f"only {len(acked)} ratings acknowledged before the deadline"
    engine = make_engine(db_url)
    with session_scope(session_factory(engine), readonly=True) as s:
        stored = {r["feedback_id"] for r in repo.export_feedback(s, "scores")}
    engine.dispose()
    missing = sorted(set(acked) - stored)
    assert not missing, f"{len(missing)} acknowledged ratings lost: {missing[:10]}"
