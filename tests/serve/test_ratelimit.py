"""The token-bucket limiter (fake clock, hand-computed waits) and the HTTP hardening:
security headers, CORS, the 413 body cap."""

from __future__ import annotations

import threading

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from taskloop.serve.ratelimit import (
    DOCS_CSP,
    PAGE_CSP,
    RateLimiter,
    install_security,
    retry_after_header,
)
from taskloop.serve.settings import ServeSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_burst_then_refused_with_retry_after(clock: FakeClock) -> None:
    """rate 60/min = 1 token/s, burst 2: two immediate calls spend the bucket (2 -> 0);
    the third needs 1 token at 1 token/s -> retry after (1 - 0) / 1 = 1.0 s."""
    limiter = RateLimiter(60, 2, clock=clock)
    assert limiter.take("user:a") == (True, 0.0)
    assert limiter.take("user:a") == (True, 0.0)
    assert limiter.take("user:a") == (False, 1.0)


def test_refill_is_proportional_to_elapsed_time(clock: FakeClock) -> None:
    """After the burst, 0.25 s earns 0.25 token: still refused, wait (1 - 0.25) / 1 = 0.75 s;
    at 1.0 s elapsed one token is there: allowed, then refused again for a full 1.0 s."""
    limiter = RateLimiter(60, 2, clock=clock)
    limiter.take("k")
    limiter.take("k")
    clock.now += 0.25
    assert limiter.take("k") == (False, 0.75)
    clock.now += 0.75
    assert limiter.take("k") == (True, 0.0)
    assert limiter.take("k") == (False, 1.0)


def test_refill_caps_at_burst(clock: FakeClock) -> None:
    """100 s idle at 1 token/s would earn 100 tokens, but the bucket holds burst = 2."""
    limiter = RateLimiter(60, 2, clock=clock)
    limiter.take("k")
    clock.now += 100
    assert [limiter.take("k")[0] for _ in range(3)] == [True, True, False]


def test_own_rate_per_key(clock: FakeClock) -> None:
    """A client with its own 30/min = 0.5 token/s, burst 1: the second call waits 1 / 0.5 = 2 s;
    the default-rate key beside it is untouched (keys are independent)."""
    limiter = RateLimiter(60, 1, clock=clock)
    assert limiter.take("client:slow", rate=30) == (True, 0.0)
    assert limiter.take("client:slow", rate=30) == (False, 2.0)
    assert limiter.take("user:other") == (True, 0.0)


def test_peek_spends_nothing(clock: FakeClock) -> None:
    """peek on a fresh key: 0; after the only token (burst 1) is spent: 1.0 s, twice."""
    limiter = RateLimiter(60, 1, clock=clock)
    assert limiter.peek("k") == 0.0
    limiter.take("k")
    assert limiter.peek("k") == 1.0
    assert limiter.peek("k") == 1.0
    clock.now += 1.0
    assert limiter.peek("k") == 0.0
    assert limiter.take("k") == (True, 0.0)


def test_memory_bounded_by_max_keys(clock: FakeClock) -> None:
    """max_keys 2: a third key drops the buckets that refilled to full (after burst * 60 / rate
    = 1 s); a dropped key starts full again."""
    limiter = RateLimiter(60, 1, clock=clock, max_keys=2)
    limiter.take("a")
    limiter.take("b")
    clock.now += 1.0
    limiter.take("c")
    assert len(limiter._buckets) == 1
    assert limiter.take("a") == (True, 0.0)


def test_thread_safe_exact_count() -> None:
    """8 threads x 50 takes on a frozen clock with burst 100: exactly 100 are allowed."""
    limiter = RateLimiter(60, 100, clock=lambda: 0.0)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [limiter.take("k")[0] for _ in range(50)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100


@pytest.mark.parametrize("bad", [(0, 1), (-1, 1), (60, 0)])
def test_bad_parameters(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="rate_per_minute"):
        RateLimiter(*bad)


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")])
def test_retry_after_rounds_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == {"Retry-After": header}


# -- HTTP hardening -----------------------------------------------------------------------


def _app(**settings: object) -> TestClient:
    app = FastAPI()
    install_security(app, ServeSettings(**settings))  # type: ignore[arg-type]

    @app.post("/v1/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/v1/own-cache")
    def own_cache(request: Request) -> dict[str, str]:
        return {}

    @app.get("/page")
    def page() -> dict[str, str]:
        return {}

    return TestClient(app)


def test_security_headers_on_api_and_page() -> None:
    client = _app()
    api = client.post("/v1/echo", content=b"abc")
    assert api.status_code == 200
    for r in (api, client.get("/page")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["content-security-policy"] == PAGE_CSP
    assert "script-src 'self';" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP
    assert api.headers["cache-control"] == "no-store"
    assert "cache-control" not in client.get("/page").headers


def test_docs_page_gets_its_own_policy() -> None:
    r = _app().get("/docs")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == DOCS_CSP
    assert r.headers["x-frame-options"] == "DENY"


def test_headers_also_on_errors() -> None:
    r = _app().get("/v1/missing")
    assert r.status_code == 404
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"


def test_body_over_cap_is_413() -> None:
    """max_body_bytes 1024: 1024 bytes pass, 1025 bytes (by Content-Length) are refused."""
    client = _app(max_body_bytes=1024)
    assert client.post("/v1/echo", content=b"x" * 1024).json() == {"size": 1024}
    r = client.post("/v1/echo", content=b"x" * 1025)
    assert r.status_code == 413


def test_streamed_body_over_cap_is_413() -> None:
    """A chunked body (no Content-Length) of 3 x 512 = 1536 bytes > 1024: cut off, 413."""
    client = _app(max_body_bytes=1024)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield b"y" * 512

    r = client.post("/v1/echo", content=chunks())
    assert "content-length" not in r.request.headers
    assert r.status_code == 413


def test_no_cors_by_default() -> None:
    r = _app().get("/page", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_for_configured_origins_only() -> None:
    client = _app(cors_origins=["https://ok.example"])
    pre = client.options(
        "/v1/echo",
        headers={
            "Origin": "https://ok.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://ok.example"
    other = client.get("/page", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
