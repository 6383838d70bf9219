"""Prometheus metrics: names, values after each helper, the request middleware."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.testclient import TestClient

from taskloop.monitor.events import AnomalyConfig, AnomalyDetector
from taskloop.monitor.metrics import (
    METRIC_NAMES,
    UNMATCHED_ROUTE,
    Metrics,
    inference_monitoring,
    make_metrics,
    observe_batch,
    observe_feedback,
    observe_prediction,
    observe_request,
    render,
    set_queue_depth,
    update_process,
)
from tests.monitor import exported_samples, touch_all


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_every_listed_name_is_exported_with_its_suffixes() -> None:
    """Histograms export _bucket/_sum/_count under their name, counters end in _total."""
    m = make_metrics()
    touch_all(m)
    samples = exported_samples(m)
    for name in METRIC_NAMES:
        if name in ("taskloop_request_seconds", "taskloop_task_seconds", "taskloop_batch_size"):
            assert {f"{name}_bucket", f"{name}_sum", f"{name}_count"} <= samples, name
        else:
            assert name in samples, name
    assert all(n.endswith("_total") for n in METRIC_NAMES if "total" in n)
    assert "process_cpu_seconds_total" in samples or sys.platform != "linux"


def test_each_app_has_its_own_registry() -> None:
    """Two make_metrics() in one process: no 'Duplicated timeseries' error, no shared counts."""
    a, b = make_metrics(), make_metrics()
    observe_request(a, "/livez", "GET", 200, 0.001)
    assert value(a, "taskloop_requests_total", route="/livez", status="200") == 1.0
    assert value(b, "taskloop_requests_total", route="/livez", status="200") is None


def test_observe_prediction_counts_status_latency_and_each_failed_check() -> None:
    """0.3 s falls in the 0.5 bucket, not the 0.25 one; two failures of one check count 2."""
    m = make_metrics()
    observe_prediction(m, "qa", "tiny", "flagged", 0.3, ["grounded", "grounded", "length"])
    observe_prediction(m, "qa", None, "ok", 0.01)
    assert value(m, "taskloop_predictions_total", task="qa", status="flagged") == 1.0
    assert value(m, "taskloop_predictions_total", task="qa", status="ok") == 1.0
    assert value(m, "taskloop_verification_failures_total", task="qa", check="grounded") == 2.0
    assert value(m, "taskloop_verification_failures_total", task="qa", check="length") == 1.0
    labels = {"task": "qa", "model": "tiny"}
    assert value(m, "taskloop_task_seconds_count", **labels) == 1.0
    assert value(m, "taskloop_task_seconds_sum", **labels) == pytest.approx(0.3)
    assert value(m, "taskloop_task_seconds_bucket", le="0.25", **labels) == 0.0
    assert value(m, "taskloop_task_seconds_bucket", le="0.5", **labels) == 1.0
    assert value(m, "taskloop_task_seconds_count", task="qa", model="none") == 1.0


def test_feedback_batch_and_queue_helpers() -> None:
    """Batches of 3 and 16: bucket le=4 holds 1, le=16 holds 2, sum 19."""
    m = make_metrics()
    observe_feedback(m, "score", 4)
    observe_feedback(m, "thumbs", "up")
    observe_feedback(m, "thumbs", "up")
    observe_feedback(m, "comment", None)
    assert value(m, "taskloop_feedback_total", kind="score", value="4") == 1.0
    assert value(m, "taskloop_feedback_total", kind="thumbs", value="up") == 2.0
    assert value(m, "taskloop_feedback_total", kind="comment", value="none") == 1.0
    observe_batch(m, "tiny", 3)
    observe_batch(m, "tiny", 16)
    assert value(m, "taskloop_batch_size_bucket", model="tiny", le="4.0") == 1.0
    assert value(m, "taskloop_batch_size_bucket", model="tiny", le="16.0") == 2.0
    assert value(m, "taskloop_batch_size_sum", model="tiny") == 19.0
    set_queue_depth(m, "tiny", 7)
    set_queue_depth(m, "tiny", 5)
    assert value(m, "taskloop_queue_depth", model="tiny") == 5.0


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_update_process_sets_resident_memory() -> None:
    m = make_metrics()
    update_process(m)
    rss = value(m, "taskloop_process_resident_bytes")
    assert rss is not None and rss > 10 * 2**20  # a Python process with numpy: > 10 MiB


def test_gpu_memory_per_device_when_torch_reports_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 2,
        memory_reserved=lambda i: 1000 * (i + 1),
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    m = make_metrics()
    update_process(m)
    assert value(m, "taskloop_gpu_memory_bytes", device="cuda:0") == 1000.0
    assert value(m, "taskloop_gpu_memory_bytes", device="cuda:1") == 2000.0


def test_gpu_gauge_stays_empty_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    m = make_metrics()
    body, content_type = render(m)
    assert b"taskloop_gpu_memory_bytes{" not in body
    assert content_type.startswith("text/plain")


def test_metrics_never_import_torch() -> None:
    """Rendering /metrics in a process without torch leaves torch unimported."""
    code = (
        "import sys\n"
        "from taskloop.monitor.metrics import make_metrics, render\n"
        "render(make_metrics())\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def monitored_app(m: Metrics, anomalies: AnomalyDetector | None = None) -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.post("/tasks/{task}")
    def run_task(task: str) -> dict[str, str]:
        if task == "missing":
            raise HTTPException(404, "no such task")
        return {"task": task}

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("bug")

    app.include_router(router)
    inference_monitoring(app, m, anomalies=anomalies)
    return app


def test_middleware_labels_requests_by_route_template() -> None:
    """Three raw paths of one route are one series; unknown paths share one label."""
    m = make_metrics()
    client = TestClient(monitored_app(m))
    for task in ("qa", "translate", "summarize"):
        assert client.post(f"/v1/tasks/{task}").status_code == 200
    assert client.post("/v1/tasks/missing").status_code == 404
    for path in ("/nope", "/wp-admin.php", "/a/b/c"):
        assert client.get(path).status_code == 404
    route = "/v1/tasks/{task}"
    assert value(m, "taskloop_requests_total", route=route, status="200") == 3.0
    assert value(m, "taskloop_requests_total", route=route, status="404") == 1.0
    assert value(m, "taskloop_request_seconds_count", route=route, method="POST", status="200")
    assert value(m, "taskloop_requests_total", route=UNMATCHED_ROUTE, status="404") == 3.0
    body, _ = render(m)
    assert b"/v1/tasks/qa" not in body and b"/nope" not in body


def test_unhandled_exception_counts_as_500_and_error_type() -> None:
    """Two 500s with error_count=2 within the window: one error_burst anomaly too."""
    m = make_metrics()
    detector = AnomalyDetector(AnomalyConfig(error_count=2), metrics=m)
    client = TestClient(monitored_app(m, detector), raise_server_exceptions=False)
    assert client.get("/v1/boom").status_code == 500
    assert client.get("/v1/boom").status_code == 500
    assert value(m, "taskloop_requests_total", route="/v1/boom", status="500") == 2.0
    assert value(m, "taskloop_errors_total", type="RuntimeError") == 2.0
    assert value(m, "taskloop_anomalies_total", kind="error_burst") == 1.0


@pytest.mark.gpu
def test_gpu_memory_gauge_with_real_cuda() -> None:
    """A 64 MiB tensor on the GPU: the caching allocator reserves at least that much."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda:0")
    m = make_metrics()
    update_process(m)
    reserved = value(m, "taskloop_gpu_memory_bytes", device="cuda:0")
    assert reserved is not None and reserved >= block.numel()
