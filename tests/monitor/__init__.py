"""Tests of runtime metrics, anomaly events, drift detection and the Grafana dashboard."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from taskloop.monitor.metrics import (
    Metrics,
    observe_batch,
    observe_error,
    observe_feedback,
    observe_prediction,
    observe_request,
    render,
    set_queue_depth,
)


def touch_all(m: Metrics) -> None:
    """Give every labelled metric one series, so that each name shows in the output
    (a labelled metric with no series exports only its HELP and TYPE lines)."""
    observe_request(m, "/v1/tasks/{task}", "POST", 200, 0.05)
    observe_prediction(m, "qa", "tiny", "flagged", 0.04, ["grounded"])
    observe_feedback(m, "thumbs", "up")
    observe_error(m, "RuntimeError")
    observe_batch(m, "tiny", 4)
    set_queue_depth(m, "tiny", 2)
    m.gpu_memory_bytes.labels(device="cuda:0").set(0)  # no CUDA here: set by hand
    m.drift_p_value.labels(test="mmd").set(0.5)
    m.drift_detected.set(0)
    m.anomalies.labels(kind="latency_spike").inc()


def exported_samples(m: Metrics) -> set[str]:
    """Every sample name in the /metrics output (``x_total``, ``x_bucket``, gauges ...)."""
    body, _ = render(m)
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
