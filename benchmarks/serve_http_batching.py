"""Dynamic batching over real HTTP: ``taskloop serve`` with batching on and off, same run.

Starts ``taskloop serve`` twice as a subprocess on loopback (a fresh ``TASKLOOP_HOME`` and
SQLite file in a temporary folder, a free port, rate limits raised out of the way), once
with ``TASKLOOP_SERVE_BATCHING=false`` and once with ``true``, and waits for ``/readyz``.
Clients are asyncio tasks with their own ``httpx.AsyncClient`` (their own connection);
each sends ``--requests-per-client`` ``POST /v1/tasks/qa`` requests one after another (the
next when the previous answer arrives), at 1, 8 and 32 concurrent clients. What a request
costs is the whole service path: token check, rate limiter, row validation, the batcher,
the offline QA default (the packaged all-MiniLM-L6-v2 encoder ranks the context's
sentences and candidate spans), the checks, and the prediction committed to SQLite.

Inputs are SQuAD v2 questions with their paragraphs (``../shared/data/qa/
squad_v2_small.json`` when present, else a few built-in rows). The encoder caches
embeddings per text and SQuAD asks several questions about each paragraph, so request
number ``k`` carries ``[k]`` at the end of its question and of every context sentence:
no text repeats, and every request pays for its embeddings as distinct traffic would.
Both servers see the same requests in the same order; the mean batch size is read from
the server's ``/metrics`` (``taskloop_batch_size_sum / _count``, before and after).

::

    python benchmarks/serve_http_batching.py                         # 1, 8, 32 clients
    python benchmarks/serve_http_batching.py --requests-per-client 32 --clients 1,8,32
    python benchmarks/serve_http_batching.py --smoke                 # seconds; smoke test

The server's torch runs on one CPU thread by default (``--torch-threads 0``: torch's
choice, what ``taskloop serve`` does unless told ``--torch-threads``), as in the other
benchmarks here: on a shared machine torch's thread pool fights other processes, and a
request costs several times more when it loses (seen here: 60 s at 20 req/s answered
half as many questions with torch's two threads as with one).

``benchmarks/serve_load.py`` reuses this file's server harness (:func:`running_server`)
and inputs (:func:`qa_rows`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from machine import describe, work_dir  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT.parent / "shared" / "data" / "qa" / "squad_v2_small.json"
CLIENTS = (1, 8, 32)
SMOKE_CLIENTS = (1, 4)
READY_TIMEOUT_S = 180.0
PASSWORD = "bench-" + secrets.token_urlsafe(12)
SERVE = (sys.executable, "-m", "taskloop", "serve")

# Used when the SQuAD sample is missing: (question, context) pairs in SQuAD's style.
BUILTIN_ROWS: tuple[tuple[str, str], ...] = (
    (
        "Which river flows through Vienna?",
        "Vienna is the capital of Austria. It lies on the Danube, in the east of the "
        "country. About two million people live there.",
    ),
    (
        "When did the council vote on the cycling lanes?",
        "The city council met on Monday. It voted to build twelve kilometres of cycling "
        "lanes. Work on the first lane starts in May.",
    ),
    (
        "Who designed the new library?",
        "The new library opened in 2019. It was designed by the architect Ana Ruiz. The "
        "building holds more than 300,000 books.",
    ),
    (
        "How long is the bridge?",
        "The bridge crosses the river north of the old town. It is 640 metres long and "
        "carries trains and cars. It was finished in 1932.",
    ),
    (
        "What do the farmers grow in the valley?",
        "The valley is warm and dry in summer. Most farmers there grow grapes and olives. "
        "A few keep sheep on the hills above the fields.",
    ),
    (
        "Where was the festival held in 2021?",
        "The music festival began in 1998 in a small village. In 2021 it was held in the "
        "harbour of Lisbon. More than 40,000 people came.",
    ),
)


def log(message: str = "") -> None:
    print(message, flush=True)


# --- inputs ---------------------------------------------------------------------------------


def squad_pairs(path: Path = SQUAD) -> tuple[list[tuple[str, str]], str]:
    """(question, context) pairs of a SQuAD v2 file, or the built-in rows; and their source."""
    if not path.is_file():
        return list(BUILTIN_ROWS), f"{len(BUILTIN_ROWS)} built-in rows ({path} not found)"
    data = json.loads(path.read_text(encoding="utf-8"))
    pairs = [
        (qa["question"], paragraph["context"])
        for article in data["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    return pairs, f"{path.name}: {len(pairs)} questions on {len(data['data'])} articles"


_SENT_END = re.compile(r"(?<=[.!?])\s+")


def _tag(text: str, k: int) -> str:
    """``text`` with `` [k]`` before each sentence's final stop (or at its end)."""
    out = []
    for sentence in _SENT_END.split(text.strip()):
        if sentence and sentence[-1] in ".!?":
            out.append(f"{sentence[:-1]} [{k}]{sentence[-1]}")
        elif sentence:
            out.append(f"{sentence} [{k}]")
    return " ".join(out)


def qa_rows(
    n: int, *, seed: int, start: int = 0, pairs: Sequence[tuple[str, str]] | None = None
) -> list[dict[str, str]]:
    """QA rows ``start`` .. ``start + n - 1``: shuffled SQuAD pairs, row ``k`` tagged ``[k]``.

    The shuffle depends on ``seed`` only, so row ``k`` is the same whatever ``start`` and
    ``n`` are (both servers and every client level draw from one sequence).
    """
    base = list(pairs) if pairs is not None else squad_pairs()[0]
    random.Random(seed).shuffle(base)
    rows = []
    for k in range(start, start + n):
        question, context = base[k % len(base)]
        rows.append({"question": _tag(question, k), "context": _tag(context, k)})
    return rows


# --- the server -----------------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    url: str
    token: str
    user: str
    database_url: str
    log_path: Path
    proc: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def taskloop(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    """Run ``python -m taskloop ARGS``; its stdout, or SystemExit with its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "taskloop", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"taskloop {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def server_env(home: Path, database_url: str, settings: dict[str, str]) -> dict[str, str]:
    """The environment of ``taskloop serve``: its own home and database, no hub, no limits
    a load test would hit (``settings`` are ``TASKLOOP_SERVE_*`` names without the prefix)."""
    env = dict(os.environ)
    env.update(
        {
            "TASKLOOP_HOME": str(home),
            "TASKLOOP_SERVE_DATABASE_URL": database_url,
            "TASKLOOP_SERVE_JWT_SECRET": secrets.token_urlsafe(48),
            "TASKLOOP_SERVE_RATE_PER_MINUTE": str(10**8),
            "TASKLOOP_SERVE_RATE_BURST": str(10**7),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    env.update({f"TASKLOOP_SERVE_{k.upper()}": v for k, v in settings.items()})
    return env


def _die_with_parent() -> None:
    """In the server's process (Linux): get SIGTERM when the benchmark dies, however it
    dies (a SIGKILL, a test's timeout), so no server outlives its benchmark."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _start(
    env: dict[str, str], log_path: Path, serve_args: Sequence[str]
) -> tuple[subprocess.Popen[bytes], str]:
    """``taskloop serve`` on a free port, once ``/readyz`` answers 200; a few tries when
    another process takes the port between our probe and the server's bind."""
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                [*SERVE, "--host", "127.0.0.1", "--port", str(port), *serve_args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise SystemExit(
                f"taskloop serve not ready after {READY_TIMEOUT_S:.0f}s; see {log_path}"
            )
        if "address already in use" not in log_path.read_text(errors="replace").lower():
            break
    tail = log_path.read_text(errors="replace")[-3000:]
    raise SystemExit(f"taskloop serve exited with status {proc.returncode}:\n{tail}")


def get_token(url: str, user: str, password: str) -> str:
    """An access token for ``user`` (password grant, every scope the user holds)."""
    r = httpx.post(
        f"{url}/v1/auth/token",
        data={"grant_type": "password", "username": user, "password": password},
        timeout=30,
    )
    if r.status_code != 200:
        raise SystemExit(f"POST /v1/auth/token: {r.status_code} {r.text}")
    token: str = r.json()["access_token"]
    return token


@contextmanager
def running_server(
    folder: Path,
    *,
    settings: dict[str, str],
    scopes: Sequence[str] = ("tasks:run",),
    database_url: str | None = None,
    user: str = "bench",
    torch_threads: int = 1,
) -> Iterator[Server]:
    """A ``taskloop serve`` subprocess with one user holding ``scopes``, stopped on exit.

    Args:
        folder: its ``TASKLOOP_HOME``, log and (by default) SQLite file go here.
        settings: ``TASKLOOP_SERVE_*`` values without the prefix (``{"batching": "false"}``).
        database_url: the database (default: ``sqlite:///FOLDER/serve.db``).
        torch_threads: the server's torch CPU threads (``--torch-threads``); 0 leaves
            torch's choice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    db = database_url or f"sqlite:///{folder / 'serve.db'}"
    env = server_env(folder / "home", db, settings)
    if torch_threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(torch_threads)
    # On the command line too, so the run says what it measures whatever the env holds.
    batching = settings.get("batching", "true").lower() in ("1", "true", "yes", "on")
    serve_args = ["--batching" if batching else "--no-batching"]
    if torch_threads:
        serve_args += ["--torch-threads", str(torch_threads)]
    scope_args = [a for s in scopes for a in ("--scope", s)]
    taskloop(
        "users", "add", user, *scope_args, "--password-stdin", "--database-url", db,
        env=env, stdin=PASSWORD + "\n",
    )  # fmt: skip
    log_path = folder / "serve.log"
    proc, url = _start(env, log_path, serve_args)
    try:
        yield Server(url, get_token(url, user, PASSWORD), user, db, log_path, proc)
    finally:
        proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Sample = tuple[str, dict[str, str], float]  # name, labels, value


def read_metrics(url: str) -> list[Sample]:
    """The samples of the server's ``/metrics`` (``taskloop_batch_size_count`` ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def metric_total(samples: Sequence[Sample], name: str, **labels: str) -> float:
    """The sum of sample ``name`` over the label sets that match ``labels``."""
    return sum(
        v
        for n, have, v in samples
        if n == name and all(have.get(k) == want for k, want in labels.items())
    )


# --- measurement ----------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    clients: int
    batching: bool
    requests: int
    errors: dict[str, int]  # status (or exception name) -> count
    seconds: float
    latencies: list[float]  # of answered (200) requests
    batches: float  # batches the server ran during this run
    batched_items: float

    @property
    def rate(self) -> float:
        return (self.requests - sum(self.errors.values())) / self.seconds

    @property
    def mean_batch(self) -> float:
        return self.batched_items / self.batches if self.batches else math.nan


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` % of values <= it."""
    if not xs:
        return math.nan
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def drive(
    url: str, token: str, rows: list[dict[str, str]], clients: int, per_client: int
) -> tuple[float, list[float], dict[str, int]]:
    """``clients`` tasks, each sending its ``per_client`` rows in sequence.

    Returns:
        wall seconds, latencies of 200 answers, and errors by status or exception name.
    """
    latencies: list[float] = []
    errors: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    sessions = [
        httpx.AsyncClient(base_url=url, headers=headers, timeout=120) for _ in range(clients)
    ]

    async def client(c: int) -> None:
        http = sessions[c]
        for row in rows[c * per_client : (c + 1) * per_client]:
            start = time.perf_counter()
            try:
                r = await http.post("/v1/tasks/qa", json=row)
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            if r.status_code == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1

    try:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        seconds = time.perf_counter() - start
    finally:
        for http in sessions:
            await http.aclose()
    return seconds, latencies, errors


def measure(
    server: Server, rows: list[dict[str, str]], *, clients: int, per_client: int, batching: bool
) -> Result:
    before = read_metrics(server.url)
    seconds, latencies, errors = asyncio.run(
        drive(server.url, server.token, rows, clients, per_client)
    )
    after = read_metrics(server.url)

    def delta(name: str) -> float:
        return metric_total(after, name) - metric_total(before, name)

    return Result(
        clients,
        batching,
        clients * per_client,
        errors,
        seconds,
        latencies,
        delta("taskloop_batch_size_count"),
        delta("taskloop_batch_size_sum"),
    )


def report(results: list[Result], task: str) -> None:
    log(
        "| model / task | clients | batching | requests | req/s | p50 ms | p99 ms | errors "
        "| mean batch | vs off |"
    )
    log("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    off = {r.clients: r for r in results if not r.batching}
    for r in sorted(results, key=lambda r: (r.clients, r.batching)):
        base = off.get(r.clients)
        ratio = f"{r.rate / base.rate:.2f}x" if base is not None and base.rate else "-"
        errors = sum(r.errors.values())
        detail = " (" + ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) + ")"
        log(
            f"| {task} | {r.clients} | {'on' if r.batching else 'off'} | {r.requests} | "
            f"{r.rate:,.1f} | {1000 * percentile(r.latencies, 50):.1f} | "
            f"{1000 * percentile(r.latencies, 99):.1f} | {errors}{detail if errors else ''} | "
            f"{r.mean_batch:.2f} | {ratio} |"
        )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests/s and p50/p99 latency of POST /v1/tasks/qa over HTTP on "
        "loopback at 1, 8 and 32 concurrent clients, taskloop serve with batching off "
        "and on (two servers, same run, same requests).",
    )
    parser.add_argument(
        "--requests-per-client",
        type=int,
        help="sequential requests per client (default 16; --smoke 3)",
    )
    parser.add_argument(
        "--clients", default=None, help="comma-separated client counts (default 1,8,32)"
    )
    parser.add_argument(
        "--max-batch", type=int, default=16, help="batching on: largest batch (default 16)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="batching on: longest a batch's first request waits (default 2, the service's)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="server torch threads (OMP_NUM_THREADS); 0: torch's choice (default 1)",
    )
    parser.add_argument("--warm-up", type=int, default=4, help="unmeasured requests per server")
    parser.add_argument("--smoke", action="store_true", help="seconds: 1 and 4 clients")
    parser.add_argument(
        "--data", type=Path, default=SQUAD, help="a SQuAD v2 JSON file (default: the shared one)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="input shuffle seed")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="servers' homes, databases and logs (default: a temporary directory, removed)",
    )
    args = parser.parse_args(argv)
    args.requests_per_client = args.requests_per_client or (3 if args.smoke else 16)
    try:
        text = args.clients or ",".join(map(str, SMOKE_CLIENTS if args.smoke else CLIENTS))
        args.clients = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--clients: comma-separated whole numbers, not {args.clients!r}")
    if not args.clients or min(args.clients) < 1 or args.requests_per_client < 1:
        parser.error("--clients and --requests-per-client must be >= 1")
    if min(args.max_batch - 1, args.max_wait_ms, args.warm_up, args.torch_threads) < 0:
        parser.error("--max-batch >= 1; --max-wait-ms, --warm-up, --torch-threads >= 0")
    return args


def stop_on_sigterm() -> None:
    """SIGTERM ends the benchmark like Ctrl-C: servers stopped, temporary files removed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    threads = f"server torch threads: {args.torch_threads or 'torch default'}"
    if not args.torch_threads:
        threads += f" (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    for line in describe(("fastapi", "uvicorn", "httpx", "torch"), extra=threads):
        log(line)
    log(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    pairs, source = squad_pairs(args.data)
    per = args.requests_per_client
    # One slice of the input sequence per client level; the same slices on both servers.
    offsets: dict[int, int] = {}
    total = args.warm_up
    for n in args.clients:
        offsets[n] = total
        total += n * per
    rows = qa_rows(total, seed=args.seed, pairs=pairs)
    log(f"inputs: {total} distinct QA rows from {source}")
    results: list[Result] = []
    with work_dir(args.work_dir, prefix="taskloop-serve-bench-") as work:
        for batching in (False, True):
            mode = "on" if batching else "off"
            settings = {
                "batching": str(batching).lower(),
                "batch_max_size": str(args.max_batch),
                "batch_max_wait_ms": str(args.max_wait_ms),
                "batch_queue_size": str(max(256, 2 * max(args.clients))),
            }
            start = time.perf_counter()
            with running_server(
                work / f"batching-{mode}", settings=settings, torch_threads=args.torch_threads
            ) as server:
                log(
                    f"server batching {mode}: {server.url} ready in "
                    f"{time.perf_counter() - start:.1f}s (log {server.log_path.name})"
                )
                if args.warm_up:  # first-call costs (imports, allocator) outside the figures
                    asyncio.run(
                        drive(server.url, server.token, rows[: args.warm_up], 1, args.warm_up)
                    )
                for n in args.clients:
                    level = rows[offsets[n] : offsets[n] + n * per]
                    r = measure(server, level, clients=n, per_client=per, batching=batching)
                    results.append(r)
                    log(
                        f"  batching {mode}, {n} clients: {r.requests} requests in "
                        f"{r.seconds:.2f}s, {sum(r.errors.values())} errors"
                    )
    log("")
    log(
        f"POST /v1/tasks/qa over HTTP on loopback; each client sends {per} requests in "
        f"sequence with its own connection. Batching on: batches of at most {args.max_batch}, "
        f"first request waits at most {args.max_wait_ms:g} ms; off: every request its own "
        "model call, same code path. req/s counts answered (200) requests; p50/p99 over "
        "them; mean batch from the server's taskloop_batch_size_sum / _count."
    )
    log("")
    report(results, "qa (offline default: all-MiniLM-L6-v2 extractive)")
    if hasattr(os, "getloadavg"):
        log(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    failed = sum(sum(r.errors.values()) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
