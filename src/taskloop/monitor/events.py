"""Anomalies of live traffic, logged as structured events: latency spikes, bursts of
empty outputs, bursts of errors.

Rolling windows are kept per key (a route template or a task). The tests are plain
functions (:func:`is_latency_spike`, :func:`empty_share`, :func:`count_recent`);
:class:`AnomalyDetector` holds the windows, applies a cooldown so a lasting problem is
reported once per ``cooldown_s`` rather than on every request, logs each anomaly through
taskloop's logger (``extra={"event": "anomaly", "kind": ..., ...}``) and counts it in
``taskloop_anomalies_total{kind}``. The clock is injectable for tests.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from taskloop.log import logger

if TYPE_CHECKING:
    from taskloop.monitor.metrics import Metrics

AnomalyKind = Literal["latency_spike", "empty_outputs", "error_burst"]


@dataclass(frozen=True)
class AnomalyConfig:
    """When traffic counts as anomalous.

    latency_factor: a request is a spike when slower than this many times the rolling
        median of its key, once ``latency_warmup`` requests have been seen.
    latency_window: how many recent latencies the median is taken over.
    empty_window, empty_share: a burst of empty outputs when more than ``empty_share``
        of the last ``empty_window`` predictions of a task are empty (judged only once
        the window is full, so two empty answers out of three do not alarm).
    error_count, error_window_s: an error burst is ``error_count`` errors or more
        within ``error_window_s`` seconds.
    cooldown_s: an anomaly of one kind and key is logged at most once per this time.
    """

    latency_factor: float = 5.0
    latency_warmup: int = 20
    latency_window: int = 200
    empty_window: int = 50
    empty_share: float = 0.5
    error_count: int = 10
    error_window_s: float = 60.0
    cooldown_s: float = 300.0


@dataclass(frozen=True)
class Anomaly:
    """One anomaly: what, where (route or task), the value seen and the limit it crossed."""

    kind: AnomalyKind
    key: str
    value: float
    threshold: float
    detail: str
    at: float  # the detector's clock


def is_latency_spike(history: Iterable[float], seconds: float, factor: float, warmup: int) -> bool:
    """Whether ``seconds`` exceeds ``factor`` × the median of ``history`` (needs at least
    ``warmup`` past values; a median of 0 never alarms)."""
    past = list(history)
    if len(past) < warmup or not past:
        return False
    median = statistics.median(past)
    return median > 0 and seconds > factor * median


def empty_share(outputs: Iterable[bool]) -> float:
    """The share of ``True`` (empty) in a window; 0 for an empty window."""
    flags = list(outputs)
    return sum(flags) / len(flags) if flags else 0.0


def count_recent(times: deque[float], now: float, window_s: float) -> int:
    """Drop times older than ``now - window_s`` from the left of ``times``; how many remain."""
    while times and times[0] <= now - window_s:
        times.popleft()
    return len(times)


def is_empty_output(output: str | None) -> bool:
    """No output, or only whitespace."""
    return output is None or not output.strip()


class AnomalyDetector:
    """Rolling windows per key and the cooldown; thread-safe.

    Args:
        config: the thresholds.
        metrics: counts each logged anomaly in ``taskloop_anomalies_total{kind}``.
        clock: seconds, monotonic (``time.monotonic`` by default; a fake in tests).
    """

    def __init__(
        self,
        config: AnomalyConfig | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or AnomalyConfig()
        self.metrics = metrics
        self.clock = clock
        self._lock = threading.Lock()
        self._latency: dict[str, deque[float]] = {}
        self._empty: dict[str, deque[bool]] = {}
        self._errors: dict[str, deque[float]] = {}
        self._last: dict[tuple[str, str], float] = {}

    def observe_latency(self, key: str, seconds: float) -> Anomaly | None:
        """Add one latency of ``key``; the spike anomaly when it is logged now."""
        cfg = self.config
        with self._lock:
            window = self._latency.setdefault(key, deque(maxlen=cfg.latency_window))
            # Judge against the window before this value: a spike must not raise its own bar.
            spike = is_latency_spike(window, seconds, cfg.latency_factor, cfg.latency_warmup)
            median = statistics.median(window) if spike else 0.0
            window.append(seconds)
            if not spike:
                return None
            return self._emit(
                "latency_spike",
                key,
                seconds,
                cfg.latency_factor * median,
                f"{seconds * 1000:.1f} ms > {cfg.latency_factor:g} x median "
                f"{median * 1000:.1f} ms of the last {len(window) - 1}",
            )

    def observe_output(self, key: str, output: str | None) -> Anomaly | None:
        """Add one prediction output of ``key``; the empty-outputs anomaly when logged now."""
        cfg = self.config
        with self._lock:
            window = self._empty.setdefault(key, deque(maxlen=cfg.empty_window))
            window.append(is_empty_output(output))
            if len(window) < cfg.empty_window:
                return None
            share = empty_share(window)
            if share <= cfg.empty_share:
                return None
            return self._emit(
                "empty_outputs",
                key,
                share,
                cfg.empty_share,
                f"{sum(window)} of the last {len(window)} outputs are empty",
            )

    def observe_error(self, key: str, error_type: str = "") -> Anomaly | None:
        """Add one error of ``key``; the error-burst anomaly when logged now."""
        cfg = self.config
        with self._lock:
            now = self.clock()
            times = self._errors.setdefault(key, deque())
            times.append(now)
            n = count_recent(times, now, cfg.error_window_s)
            if n < cfg.error_count:
                return None
            last = f" (last: {error_type})" if error_type else ""
            return self._emit(
                "error_burst",
                key,
                n,
                cfg.error_count,
                f"{n} errors in the last {cfg.error_window_s:g} s{last}",
            )

    def _emit(
        self, kind: AnomalyKind, key: str, value: float, threshold: float, detail: str
    ) -> Anomaly | None:
        """Log and count the anomaly unless one of its kind and key was logged within the
        cooldown. Called with the lock held."""
        now = self.clock()
        last = self._last.get((kind, key))
        if last is not None and now - last < self.config.cooldown_s:
            return None
        self._last[(kind, key)] = now
        anomaly = Anomaly(kind, key, float(value), float(threshold), detail, now)
        logger.warning(
            "anomaly %s on %s: %s",
            kind,
            key,
            detail,
            extra={
                "event": "anomaly",
                "kind": kind,
                "key": key,
                "value": anomaly.value,
                "threshold": anomaly.threshold,
            },
        )
        if self.metrics is not None:
            self.metrics.anomalies.labels(kind=kind).inc()
        return anomaly
