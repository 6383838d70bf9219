"""Anomaly events with a fake clock: latency spikes, empty outputs, error bursts, cooldown."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator

import pytest

from taskloop.monitor.events import (
    AnomalyConfig,
    AnomalyDetector,
    count_recent,
    empty_share,
    is_empty_output,
    is_latency_spike,
)
from taskloop.monitor.metrics import make_metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records of the taskloop logger (which may not propagate to the root logger)."""
    handler = ListHandler()
    log = logging.getLogger("taskloop")
    log.addHandler(handler)
    yield handler.records
    log.removeHandler(handler)


def anomalies(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "event", None) == "anomaly"]


def test_pure_checks() -> None:
    """median(0.1, 0.2, 0.3) = 0.2: 0.61 > 3 x 0.2 is a spike, 0.59 is not."""
    assert is_latency_spike([0.1, 0.2, 0.3], 0.61, factor=3, warmup=3)
    assert not is_latency_spike([0.1, 0.2, 0.3], 0.59, factor=3, warmup=3)
    assert not is_latency_spike([0.1, 0.2], 100.0, factor=3, warmup=3)  # still warming up
    assert not is_latency_spike([0.0, 0.0, 0.0], 1.0, factor=3, warmup=3)  # median 0
    assert empty_share([True, False, False, True]) == 0.5
    assert empty_share([]) == 0.0
    assert is_empty_output(None) and is_empty_output(" \n") and not is_empty_output("x")
    times = deque([0.0, 4.0, 8.0])
    assert count_recent(times, now=10.0, window_s=10.0) == 2  # 0.0 is exactly 10 s old: out
    assert list(times) == [4.0, 8.0]


def test_latency_spike_after_warmup_then_cooldown(records: list[logging.LogRecord]) -> None:
    """Five latencies of 0.1 s (median 0.1, k=3): 0.29 s is normal, 0.31 s a spike (> 0.3).

    A second spike within the 60 s cooldown is not logged again; after it, it is.
    """
    clock = FakeClock()
    m = make_metrics()
    cfg = AnomalyConfig(latency_factor=3, latency_warmup=5, cooldown_s=60)
    det = AnomalyDetector(cfg, metrics=m, clock=clock)
    assert all(det.observe_latency("/v1/tasks/{task}", 0.1) is None for _ in range(5))
    assert det.observe_latency("/v1/tasks/{task}", 0.29) is None
    spike = det.observe_latency("/v1/tasks/{task}", 0.31)
    assert spike is not None
    assert (spike.kind, spike.key, spike.value) == ("latency_spike", "/v1/tasks/{task}", 0.31)
    assert spike.threshold == pytest.approx(0.3)

    clock.now += 59
    assert det.observe_latency("/v1/tasks/{task}", 5.0) is None  # cooldown
    clock.now += 1
    assert det.observe_latency("/v1/tasks/{task}", 5.0) is not None
    assert m.registry.get_sample_value("taskloop_anomalies_total", {"kind": "latency_spike"}) == 2

    logged = anomalies(records)
    assert len(logged) == 2
    assert logged[0].levelno == logging.WARNING
    assert logged[0].kind == "latency_spike"  # type: ignore[attr-defined]
    assert logged[0].key == "/v1/tasks/{task}"  # type: ignore[attr-defined]


def test_latency_windows_are_per_key() -> None:
    """A slow route does not set the bar of a fast one, and warm-up counts per key."""
    det = AnomalyDetector(AnomalyConfig(latency_factor=3, latency_warmup=3), clock=FakeClock())
    for _ in range(3):
        det.observe_latency("/slow", 2.0)
    assert det.observe_latency("/fast", 5.0) is None  # /fast has no history yet
    for _ in range(3):
        det.observe_latency("/fast", 0.01)
    assert det.observe_latency("/fast", 0.05) is not None  # 0.05 > 3 x 0.01
    assert det.observe_latency("/slow", 5.0) is None  # 5 < 3 x 2


def test_empty_outputs_burst_needs_a_full_window() -> None:
    """Window 4, threshold 0.5: 3 empties of 3 is not judged yet; 2 of 4 is not above 0.5;
    then ("", "", "", "x") has 3 of 4 = 0.75 > 0.5."""
    det = AnomalyDetector(AnomalyConfig(empty_window=4, empty_share=0.5), clock=FakeClock())
    assert [det.observe_output("qa", o) for o in ("", None, " ")] == [None, None, None]
    assert det.observe_output("qa", "an answer") is not None  # window full: 3 of 4 empty

    det = AnomalyDetector(AnomalyConfig(empty_window=4, empty_share=0.5), clock=FakeClock())
    outs = [det.observe_output("qa", o) for o in ("a", "", "b", "")]
    assert outs == [None, None, None, None]  # 2 of 4 = 0.5, not above
    found = det.observe_output("qa", "")  # window (, b, , ): 3 of 4
    assert found is not None and found.value == 0.75 and found.kind == "empty_outputs"


def test_error_burst_counts_within_the_time_window() -> None:
    """3 errors in 10 s: at t=0, 6, 11 only two are within 10 s of t=11; at t=0, 4, 8 three."""
    clock = FakeClock()
    det = AnomalyDetector(AnomalyConfig(error_count=3, error_window_s=10), clock=clock)
    start = clock.now
    for t in (0, 6, 11):
        clock.now = start + t
        assert det.observe_error("/v1/boom", "500") is None

    clock = FakeClock()
    det = AnomalyDetector(AnomalyConfig(error_count=3, error_window_s=10), clock=clock)
    start = clock.now
    found = []
    for t in (0, 4, 8):
        clock.now = start + t
        found.append(det.observe_error("/v1/boom", "500"))
    assert found[:2] == [None, None]
    assert found[2] is not None and found[2].kind == "error_burst" and found[2].value == 3
