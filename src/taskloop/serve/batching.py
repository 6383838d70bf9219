"""Dynamic batching of model calls for the service, with a bounded queue per model.

Requests for one model key are gathered into batches of at most ``max_batch_size``; a
batch leaves when it is full or ``max_wait_ms`` after its first item arrived, whichever
comes first. Each key has one worker thread, so a model never runs concurrently with
itself and the event loop stays free while it runs. Results go back to their callers in
order. A full queue refuses new work with :class:`QueueFull` (the service answers 503
with ``Retry-After``) instead of letting latency grow without bound.

``run_batch`` is a plain synchronous function (model inference); metrics stay outside
this module through the ``on_batch`` / ``on_queue_depth`` callbacks::

    batcher = DynamicBatcher(lambda key, texts: models[key].predict(texts), max_batch_size=16)
    out = await batcher.submit("summarize", "a long text ...")
    ...
    await batcher.close()  # in the app's lifespan: finishes queued work
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from taskloop.errors import ExitStatus
from taskloop.serve.errors import ServeError

logger = logging.getLogger("taskloop.serve.batching")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

RunBatch = Callable[[str, list[ItemT]], Sequence[ResultT]]
OnBatch = Callable[[str, int, float], None]  # key, batch size, seconds
OnQueueDepth = Callable[[str, int], None]  # key, items waiting

RECENT_BATCHES = 20  # durations kept per key for the Retry-After estimate


class QueueFull(ServeError):
    """A model's queue holds ``max_queue`` items already; retry after ``retry_after_s``."""

    code = "serve.queue_full"

    def __init__(self, key: str, depth: int, retry_after_s: int) -> None:
        super().__init__(
            f"model {key!r} has {depth} requests waiting, the most it queues",
            hint=f"retry after {retry_after_s} s, or raise TASKLOOP_SERVE_BATCH_QUEUE_SIZE",
        )
        self.key = key
        self.depth = depth
        self.retry_after_s = retry_after_s


class BatchError(ServeError):
    """``run_batch`` broke its contract (wrong number of results), or the batcher closed."""

    code = "serve.batch"
    exit_status = ExitStatus.INTERNAL


def retry_after(recent_s: Sequence[float], depth: int, max_batch_size: int, busy: bool) -> int:
    """Whole seconds until a queue of ``depth`` items has likely drained, at least 1.

    The mean of the recent batch durations times the batches ahead: the queued ones
    (``ceil(depth / max_batch_size)``) plus the one running now when ``busy``.
    """
    if not recent_s:
        return 1
    batches = math.ceil(depth / max_batch_size) + (1 if busy else 0)
    return max(1, math.ceil(sum(recent_s) / len(recent_s) * batches))


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT]
    arrived: float  # loop time


@dataclass
class _Lane(Generic[ItemT, ResultT]):
    """One model key's queue, its worker task and its worker thread."""

    key: str
    loop: asyncio.AbstractEventLoop
    executor: ThreadPoolExecutor
    queue: deque[_Pending[ItemT, ResultT]] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    recent_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_BATCHES))
    busy: bool = False
    task: asyncio.Task[None] | None = None


class DynamicBatcher(Generic[ItemT, ResultT]):
    """Gathers ``submit``-ted items per key into batches for ``run_batch``.

    Args:
        run_batch: ``run_batch(key, items) -> results``, one result per item in order;
            synchronous, run in the key's worker thread.
        max_batch_size: most items in one call.
        max_wait_ms: longest a batch's first item waits for company; 0 takes whatever
            is queued at once (items that arrived while the model ran still share a batch).
        max_queue: most items waiting per key; more raise :class:`QueueFull`.
        enabled: False runs every item as its own batch, through the same path (the
            baseline the batching benchmark compares against, and a switch for debugging).
        on_batch: called with (key, size, seconds) after every batch, failed ones too.
        on_queue_depth: called with (key, items waiting) whenever that number changes.
    """

    def __init__(
        self,
        run_batch: RunBatch[ItemT, ResultT],
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
        enabled: bool = True,
        on_batch: OnBatch | None = None,
        on_queue_depth: OnQueueDepth | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(
                "DynamicBatcher needs max_batch_size >= 1, max_queue >= 1 and max_wait_ms >= 0, "
                f"not {max_batch_size}, {max_queue}, {max_wait_ms}"
            )
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size if enabled else 1
        self.max_wait_s = max_wait_ms / 1000 if enabled else 0.0
        self.max_queue = max_queue
        self.enabled = enabled
        self.on_batch = on_batch
        self.on_queue_depth = on_queue_depth
        self._lanes: dict[str, _Lane[ItemT, ResultT]] = {}
        self._closing = False

    # --- callers ---------------------------------------------------------------------------

    async def submit(self, key: str, item: ItemT) -> ResultT:
        """The result of ``run_batch`` for ``item``, run in a batch with others for ``key``.

        Raises:
            QueueFull: ``max_queue`` items for ``key`` are waiting already.
            BatchError: the batcher is closing, or ``run_batch`` returned the wrong number
                of results.
            Exception: whatever ``run_batch`` raised for the batch holding ``item``.
        """
        if self._closing:
            raise BatchError(
                f"the batcher is shutting down; request for model {key!r} refused",
                hint="retry against another replica or after the service restarts",
            )
        lane = self._lane(key)
        depth = len(lane.queue)
        if depth >= self.max_queue:
            raise QueueFull(
                key, depth, retry_after(lane.recent_s, depth, self.max_batch_size, lane.busy)
            )
        future: asyncio.Future[ResultT] = lane.loop.create_future()
        lane.queue.append(_Pending(item, future, lane.loop.time()))
        lane.arrived.set()
        self._report_depth(lane)
        # A caller that goes away (client disconnect) cancels its future; the worker skips it.
        return await future

    def depth(self, key: str) -> int:
        """Items waiting for ``key`` (not counting the batch running now)."""
        lane = self._lanes.get(key)
        return len(lane.queue) if lane is not None else 0

    def keys(self) -> list[str]:
        """The model keys that have had work."""
        return list(self._lanes)

    async def close(self, *, drain: bool = True) -> None:
        """Stop taking work; finish what is queued (``drain``) or fail it with BatchError.

        The batch running now always finishes (a thread cannot be interrupted). After
        ``close`` returns the batcher may be used again: lanes restart on the next submit
        (a second app lifespan, as in tests that open the app twice).
        """
        self._closing = True
        try:
            lanes = list(self._lanes.values())
            if not drain:
                for lane in lanes:
                    while lane.queue:
                        pending = lane.queue.popleft()
                        if not pending.future.done():
                            pending.future.set_exception(
                                BatchError(
                                    f"the service shut down before model {lane.key!r} ran "
                                    "this request",
                                    hint="retry the request",
                                )
                            )
                    self._report_depth(lane)
            for lane in lanes:
                lane.arrived.set()  # a waiting worker wakes, sees _closing and an empty queue
            tasks = [lane.task for lane in lanes if lane.task is not None]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            for lane in lanes:
                lane.executor.shutdown(wait=False)
            self._lanes.clear()
        finally:
            self._closing = False

    # --- the worker ------------------------------------------------------------------------

    def _lane(self, key: str) -> _Lane[ItemT, ResultT]:
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(key)
        if lane is not None and lane.loop is not loop:
            if not lane.loop.is_closed():
                raise BatchError(
                    f"model {key!r} is batched on another event loop that is still running",
                    hint="use one DynamicBatcher per event loop, or close() it before reuse",
                )
            lane.executor.shutdown(wait=False)
            lane = None
        if lane is None or lane.task is None or lane.task.done():
            lane = _Lane(
                key=key,
                loop=loop,
                executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{key}"),
                queue=lane.queue if lane is not None and lane.loop is loop else deque(),
            )
            lane.task = loop.create_task(self._work(lane), name=f"batcher[{key}]")
            self._lanes[key] = lane
        return lane

    async def _work(self, lane: _Lane[ItemT, ResultT]) -> None:
        while True:
            while not lane.queue:
                if self._closing:
                    return
                lane.arrived.clear()
                await lane.arrived.wait()
            await self._gather(lane)
            batch = self._take(lane)
            self._report_depth(lane)
            if batch:
                await self._run(lane, batch)

    async def _gather(self, lane: _Lane[ItemT, ResultT]) -> None:
        """Wait until the queue holds a full batch or the first item's wait is over."""
        deadline = lane.queue[0].arrived + self.max_wait_s
        while len(lane.queue) < self.max_batch_size and not self._closing:
            remaining = deadline - lane.loop.time()
            if remaining <= 0:
                return
            lane.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.arrived.wait(), remaining)

    def _take(self, lane: _Lane[ItemT, ResultT]) -> list[_Pending[ItemT, ResultT]]:
        batch: list[_Pending[ItemT, ResultT]] = []
        while lane.queue and len(batch) < self.max_batch_size:
            pending = lane.queue.popleft()
            if not pending.future.done():  # cancelled callers cost no model time
                batch.append(pending)
        return batch

    async def _run(
        self, lane: _Lane[ItemT, ResultT], batch: list[_Pending[ItemT, ResultT]]
    ) -> None:
        items = [p.item for p in batch]
        lane.busy = True
        start = time.perf_counter()
        try:
            results = list(
                await lane.loop.run_in_executor(lane.executor, self.run_batch, lane.key, items)
            )
            if len(results) != len(items):
                raise BatchError(
                    f"run_batch for model {lane.key!r} returned {len(results)} results "
                    f"for {len(items)} items",
                    hint="run_batch must return exactly one result per item, in order",
                )
        except asyncio.CancelledError:
            # The loop is going away without close(): callers must not wait forever.
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(
                        BatchError(f"the batch worker for model {lane.key!r} was cancelled")
                    )
            raise
        except Exception as exc:  # every caller of the batch gets the model's error
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        else:
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
        finally:
            seconds = time.perf_counter() - start
            lane.busy = False
            lane.recent_s.append(seconds)
            self._callback(self.on_batch, lane.key, len(items), seconds)

    # --- monitoring ------------------------------------------------------------------------

    def _report_depth(self, lane: _Lane[ItemT, ResultT]) -> None:
        self._callback(self.on_queue_depth, lane.key, len(lane.queue))

    @staticmethod
    def _callback(fn: Callable[..., None] | None, *args: object) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # a broken metrics hook must never fail a request
            logger.warning("batcher callback %r failed", fn, exc_info=True)
