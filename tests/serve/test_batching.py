"""Dynamic batching: answers reach their own callers, batch limits, waits, errors, back-pressure.

Every test drives the batcher with ``asyncio.run`` and a recording ``run_batch``. Tests that
need a batch to be "in flight" block ``run_batch`` on a ``threading.Event`` (it runs in the
key's worker thread), so nothing depends on timing; ``asyncio.wait_for`` turns a hang (a
batch that never leaves) into a clear failure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from taskloop.serve.batching import BatchError, DynamicBatcher, QueueFull, retry_after
from taskloop.serve.errors import ServeError

T = TypeVar("T")
LIMIT_S = 10.0  # a hung batch fails the test instead of stalling the suite


class Recorder:
    """A run_batch that records each call and answers ``out:{x}``; optionally blocked."""

    def __init__(self, block_first: bool = False) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.started = threading.Event()  # set when a call starts
        self.release = threading.Event()
        if not block_first:
            self.release.set()
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0

    def __call__(self, key: str, items: list[Any]) -> list[str]:
        with self.lock:
            self.calls.append((key, list(items)))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        self.started.set()
        try:
            if not self.release.wait(LIMIT_S):
                raise RuntimeError("test never released run_batch")
            return [f"out:{x}" for x in items]
        finally:
            with self.lock:
                self.active -= 1

    def sizes(self, key: str | None = None) -> list[int]:
        return [len(items) for k, items in self.calls if key is None or k == key]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def limited() -> T:
        return await asyncio.wait_for(main(), LIMIT_S)

    return asyncio.run(limited())


async def started(rec: Recorder) -> None:
    """Wait (off the loop) until run_batch has been entered."""
    assert await asyncio.to_thread(rec.started.wait, LIMIT_S), "run_batch never started"


async def queued(batcher: DynamicBatcher[Any, Any], key: str, n: int) -> None:
    """Let submitted tasks run until ``n`` items wait for ``key``."""
    for _ in range(1000):
        if batcher.depth(key) >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{batcher.depth(key)} items queued, expected {n}")


def gather(*aws: Awaitable[T]) -> asyncio.Future[list[T]]:
    return asyncio.gather(*aws)


# --- answers and batch sizes --------------------------------------------------------------


def test_each_caller_gets_its_own_answer_and_batches_stay_within_the_limit() -> None:
    """50 concurrent callers with distinct inputs: caller i gets "out:i" whatever batch it
    rode in; no batch exceeds 8 items, so at least ceil(50 / 8) = 7 calls carry all 50."""
    rec = Recorder()

    async def main() -> list[str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(rec, max_batch_size=8, max_wait_ms=5)
        try:
            return await gather(*(batcher.submit("m", i) for i in range(50)))
        finally:
            await batcher.close()

    assert run(main) == [f"out:{i}" for i in range(50)]
    assert max(rec.sizes()) <= 8
    assert len(rec.calls) >= 7
    assert sorted(x for _, items in rec.calls for x in items) == list(range(50))


def test_a_full_batch_leaves_without_waiting_out_max_wait() -> None:
    """8 quick submits with max_batch_size 8 and max_wait 60 s: one call of 8, at once (a
    batcher that waited the full 60 s would hit the 10 s limit)."""
    rec = Recorder()

    async def main() -> list[str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(
            rec, max_batch_size=8, max_wait_ms=60_000
        )
        try:
            return await gather(*(batcher.submit("m", i) for i in range(8)))
        finally:
            await batcher.close()

    assert run(main) == [f"out:{i}" for i in range(8)]
    assert rec.sizes() == [8]


def test_quick_submits_share_one_batch_within_max_wait() -> None:
    """8 submits issued together, max_batch_size 16, max_wait 200 ms: the batch is not full,
    so it leaves when the first item's wait is over, carrying all 8 (one call)."""
    rec = Recorder()

    async def main() -> list[str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(rec, max_batch_size=16, max_wait_ms=200)
        try:
            return await gather(*(batcher.submit("m", i) for i in range(8)))
        finally:
            await batcher.close()

    assert run(main) == [f"out:{i}" for i in range(8)]
    assert rec.sizes() == [8]


def test_max_wait_zero_runs_at_once_and_batches_what_queued_meanwhile() -> None:
    """max_wait 0: the first item runs alone at once (size 1); 5 items that arrive while the
    model is busy leave together as soon as it is free (size 5), without waiting for more
    (max_batch_size 16 is never reached)."""
    rec = Recorder(block_first=True)

    async def main() -> list[str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(rec, max_batch_size=16, max_wait_ms=0)
        try:
            first = asyncio.ensure_future(batcher.submit("m", 0))
            await started(rec)
            rest = [asyncio.ensure_future(batcher.submit("m", i)) for i in range(1, 6)]
            await queued(batcher, "m", 5)
            rec.release.set()
            return await gather(first, *rest)
        finally:
            rec.release.set()
            await batcher.close()

    assert run(main) == [f"out:{i}" for i in range(6)]
    assert rec.sizes() == [1, 5]


def test_one_key_never_runs_concurrently_with_itself() -> None:
    """40 submits, batches of at most 2, each call sleeping 1 ms: at most one call of the key
    is inside run_batch at any moment, and 40 / 2 = 20 calls at least."""
    rec = Recorder()

    def slow(key: str, items: list[int]) -> list[str]:
        time.sleep(0.001)
        return rec(key, items)

    async def main() -> None:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(slow, max_batch_size=2, max_wait_ms=0)
        try:
            await gather(*(batcher.submit("m", i) for i in range(40)))
        finally:
            await batcher.close()

    run(main)
    assert rec.most_active == 1
    assert len(rec.calls) >= 20


def test_disabled_batching_runs_every_item_alone() -> None:
    """enabled=False: 10 concurrent submits become 10 calls of one item each, answers intact."""
    rec = Recorder()

    async def main() -> list[str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(
            rec, max_batch_size=16, max_wait_ms=1000, enabled=False
        )
        try:
            return await gather(*(batcher.submit("m", i) for i in range(10)))
        finally:
            await batcher.close()

    assert run(main) == [f"out:{i}" for i in range(10)]
    assert rec.sizes() == [1] * 10


def test_two_keys_run_independently() -> None:
    """Key "a" is stuck inside run_batch; key "b" still gets its answer, from its own thread."""
    a = Recorder(block_first=True)
    b = Recorder()

    def by_key(key: str, items: list[int]) -> list[str]:
        return (a if key == "a" else b)(key, items)

    async def main() -> tuple[str, str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(by_key, max_wait_ms=0)
        try:
            stuck = asyncio.ensure_future(batcher.submit("a", 1))
            await started(a)
            got_b = await batcher.submit("b", 2)
            assert not stuck.done()
            a.release.set()
            return await stuck, got_b
        finally:
            a.release.set()
            await batcher.close()

    assert run(main) == ("out:1", "out:2")
    assert sorted(batcher_keys for batcher_keys, _ in a.calls + b.calls) == ["a", "b"]


# --- errors -------------------------------------------------------------------------------


def test_an_exception_in_run_batch_reaches_every_caller_of_that_batch() -> None:
    """run_batch raises on its first call (3 items, sent together): all 3 callers get that
    ValueError; the worker survives and the next submit gets "out:9"."""
    calls: list[list[int]] = []

    def flaky(key: str, items: list[int]) -> list[str]:
        calls.append(items)
        if len(calls) == 1:
            raise ValueError("boom")
        return [f"out:{x}" for x in items]

    async def main() -> tuple[list[Any], str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(flaky, max_batch_size=3, max_wait_ms=0)
        try:
            first = await asyncio.gather(
                *(batcher.submit("m", i) for i in range(3)), return_exceptions=True
            )
            return first, await batcher.submit("m", 9)
        finally:
            await batcher.close()

    first, after = run(main)
    assert calls[0] == [0, 1, 2]
    assert all(isinstance(e, ValueError) and str(e) == "boom" for e in first)
    assert after == "out:9"


def test_a_result_list_of_the_wrong_length_fails_every_caller() -> None:
    """3 items in, 2 results out: no caller can be matched safely, so all 3 get BatchError."""

    def short(key: str, items: list[int]) -> list[str]:
        return [f"out:{x}" for x in items][:-1]

    async def main() -> list[Any]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(short, max_batch_size=3, max_wait_ms=0)
        try:
            return await asyncio.gather(
                *(batcher.submit("m", i) for i in range(3)), return_exceptions=True
            )
        finally:
            await batcher.close()

    errors = run(main)
    assert len(errors) == 3
    for e in errors:
        assert isinstance(e, BatchError) and isinstance(e, ServeError)
        assert "returned 2 results for 3 items" in str(e)


def test_a_full_queue_raises_queue_full_with_retry_after() -> None:
    """max_queue 3, max_batch_size 1: item 0 is running (blocked), items 1-3 wait (depth 3),
    so item 4 is refused with QueueFull(depth 3, retry_after_s >= 1); once released, the
    4 accepted items all get their answers."""
    rec = Recorder(block_first=True)

    async def main() -> tuple[QueueFull, list[str]]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(
            rec, max_batch_size=1, max_wait_ms=0, max_queue=3
        )
        try:
            running = asyncio.ensure_future(batcher.submit("m", 0))
            await started(rec)
            waiting = [asyncio.ensure_future(batcher.submit("m", i)) for i in (1, 2, 3)]
            await queued(batcher, "m", 3)
            with pytest.raises(QueueFull) as info:
                await batcher.submit("m", 4)
            rec.release.set()
            return info.value, await gather(running, *waiting)
        finally:
            rec.release.set()
            await batcher.close()

    full, answers = run(main)
    assert full.key == "m" and full.depth == 3
    assert full.retry_after_s >= 1
    assert full.code == "serve.queue_full" and full.hint
    assert answers == ["out:0", "out:1", "out:2", "out:3"]
    assert rec.sizes() == [1, 1, 1, 1]


def test_retry_after_is_mean_batch_time_times_batches_ahead() -> None:
    """Recent batches took 0.5, 0.5, 1.1 s: mean 0.7 s.
    - 8 items queued in batches of 4 = ceil(8 / 4) = 2 batches, plus the running one = 3:
      3 * 0.7 = 2.1 -> rounded up, 3 s (idle instead: 2 * 0.7 = 1.4 -> 2 s).
    - 5 items, idle: ceil(5 / 4) = 2 batches, 1.4 -> 2 s (up, never to the nearest).
    - 4 items, idle: 1 batch, 0.7 -> at least 1 s.
    Nothing measured yet -> 1 s; 9 items in batches of 4 at 2 s each: 3 * 2 = 6 s."""
    recent = [0.5, 0.5, 1.1]
    assert retry_after(recent, depth=8, max_batch_size=4, busy=True) == 3
    assert retry_after(recent, depth=8, max_batch_size=4, busy=False) == 2
    assert retry_after(recent, depth=5, max_batch_size=4, busy=False) == 2
    assert retry_after(recent, depth=4, max_batch_size=4, busy=False) == 1
    assert retry_after([], depth=100, max_batch_size=1, busy=True) == 1
    assert retry_after([2.0], depth=9, max_batch_size=4, busy=False) == 6


def test_a_cancelled_caller_costs_no_model_time() -> None:
    """While item 0 runs, items 1 and 2 wait; the caller of 1 goes away (cancelled), so the
    next call carries item 2 only."""
    rec = Recorder(block_first=True)

    async def main() -> str:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(rec, max_batch_size=8, max_wait_ms=0)
        try:
            first = asyncio.ensure_future(batcher.submit("m", 0))
            await started(rec)
            gone = asyncio.ensure_future(batcher.submit("m", 1))
            kept = asyncio.ensure_future(batcher.submit("m", 2))
            await queued(batcher, "m", 2)
            gone.cancel()
            rec.release.set()
            await first
            return await kept
        finally:
            rec.release.set()
            await batcher.close()

    assert run(main) == "out:2"
    assert [items for _, items in rec.calls] == [[0], [2]]


# --- monitoring and shutdown --------------------------------------------------------------


def test_callbacks_see_batch_sizes_and_queue_depth_and_cannot_break_requests() -> None:
    """5 items sent together with max_batch_size 5: on_batch reports one batch of 5 that took
    >= 0 s; on_queue_depth sees the depth climb to 5 and fall to 0. A raising hook is logged,
    and the callers still get their answers."""
    batches: list[tuple[str, int, float]] = []
    depths: list[int] = []

    def on_depth(key: str, depth: int) -> None:
        depths.append(depth)
        raise RuntimeError("metrics backend down")

    async def main() -> list[str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(
            Recorder(),
            max_batch_size=5,
            max_wait_ms=1000,
            on_batch=lambda k, n, s: batches.append((k, n, s)),
            on_queue_depth=on_depth,
        )
        try:
            return await gather(*(batcher.submit("m", i) for i in range(5)))
        finally:
            await batcher.close()

    assert run(main) == [f"out:{i}" for i in range(5)]
    assert [(k, n) for k, n, _ in batches] == [("m", 5)]
    assert batches[0][2] >= 0
    assert depths == [1, 2, 3, 4, 5, 0]


def test_close_drains_queued_work_without_waiting_out_max_wait() -> None:
    """3 items wait for company (max_wait 60 s, batch of 16 not full); close() sends them at
    once and they get answers. Afterwards the batcher works again (a second app lifespan)."""
    rec = Recorder()

    async def main() -> tuple[list[str], str]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(
            rec, max_batch_size=16, max_wait_ms=60_000
        )
        tasks = [asyncio.ensure_future(batcher.submit("m", i)) for i in range(3)]
        await queued(batcher, "m", 3)
        await batcher.close()
        assert all(t.done() for t in tasks)
        drained = [t.result() for t in tasks]
        batcher.max_wait_s = 0.0  # so the lone item below leaves at once
        again = await batcher.submit("m", 7)
        await batcher.close()
        return drained, again

    assert run(main) == (["out:0", "out:1", "out:2"], "out:7")
    assert rec.sizes() == [3, 1]


def test_close_without_drain_fails_queued_work_and_refuses_new_work() -> None:
    """Item 0 is running when close(drain=False) starts: it finishes ("out:0"); items 1 and 2,
    still queued, get BatchError; a submit during close is refused with BatchError."""
    rec = Recorder(block_first=True)

    async def main() -> tuple[list[Any], BatchError]:
        batcher: DynamicBatcher[int, str] = DynamicBatcher(rec, max_batch_size=8, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit("m", 0))
        await started(rec)
        waiting = [asyncio.ensure_future(batcher.submit("m", i)) for i in (1, 2)]
        await queued(batcher, "m", 2)
        closing = asyncio.ensure_future(batcher.close(drain=False))
        await asyncio.sleep(0)
        with pytest.raises(BatchError) as refused:
            await batcher.submit("m", 3)
        rec.release.set()
        await closing
        got = await asyncio.gather(first, *waiting, return_exceptions=True)
        return got, refused.value

    got, refused = run(main)
    assert got[0] == "out:0"
    assert all(isinstance(e, BatchError) and "shut down" in str(e) for e in got[1:])
    assert "shutting down" in str(refused)
    assert rec.sizes() == [1]


def test_a_batcher_outlives_the_event_loop_it_first_ran_on() -> None:
    """Without a lifespan (Starlette's TestClient outside ``with``) every request runs on a
    new event loop that is closed afterwards: the next submit starts a fresh worker for the
    key instead of waiting on the dead loop's one. Three loops, three answers."""
    rec = Recorder()
    batcher: DynamicBatcher[int, str] = DynamicBatcher(rec, max_wait_ms=0)
    answers = [asyncio.run(asyncio.wait_for(batcher.submit("m", i), LIMIT_S)) for i in range(3)]
    assert answers == ["out:0", "out:1", "out:2"]
    assert rec.sizes() == [1, 1, 1]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size >= 1"):
        DynamicBatcher(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms >= 0"):
        DynamicBatcher(Recorder(), max_wait_ms=-1)
