"""Rate limiting per principal (token bucket, in memory) and HTTP hardening: security
headers, CORS and the request body cap.

The limiter is per process: with several replicas each one counts on its own, so the
effective limit is ``replicas x rate`` (NGINX ``limit_req`` in front bounds the total).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.datastructures import MutableHeaders

from taskloop.serve.auth import Principal, current_principal

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from taskloop.serve.settings import ServeSettings


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by principal: ``rate_per_minute`` refill, ``burst`` capacity.

    A new key starts full (``burst`` requests at once), then earns one request every
    ``60 / rate`` seconds. Thread-safe: sync routes run in a thread pool.

    Args:
        rate_per_minute: the default refill rate.
        burst: the bucket capacity.
        clock: seconds, monotonic (tests pass a fake one).
        max_keys: buckets kept before full (idle) ones are dropped, so memory stays bounded.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError(
                f"rate_per_minute must be > 0 and burst >= 1, got {rate_per_minute}, {burst}"
            )
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _refill(self, key: str, per_second: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * per_second)
            bucket.updated = now
        return bucket

    def _prune(self, now: float) -> None:
        # A bucket that has refilled to full holds no state worth keeping.
        full_after = self.burst * 60.0 / self.rate_per_minute
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    def take(self, key: str, rate: float | None = None) -> tuple[bool, float]:
        """Spend one request of ``key``'s bucket.

        Args:
            key: who is asking (``Principal.key``).
            rate: this key's own rate per minute (a client's), else the default.

        Returns:
            ``(True, 0.0)`` when allowed, else ``(False, seconds until one is earned)``.
        """
        per_second = (rate or self.rate_per_minute) / 60.0
        with self._lock:
            bucket = self._refill(key, per_second, self.clock())
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True, 0.0
            return False, (1.0 - bucket.tokens) / per_second

    def peek(self, key: str, rate: float | None = None) -> float:
        """Seconds until ``key`` may spend a request (0.0 now), spending nothing."""
        per_second = (rate or self.rate_per_minute) / 60.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(
                float(self.burst),
                bucket.tokens + max(0.0, self.clock() - bucket.updated) * per_second,
            )
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / per_second


def retry_after_header(seconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (RFC 9110 delta-seconds), rounded up, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def rate_limited(
    principal: Annotated[Principal, Depends(current_principal)], request: Request
) -> Principal:
    """Spend one request of the caller's bucket (``app.state.limiter``).

    Raises:
        HTTPException: 429 with ``Retry-After`` when the bucket is empty.
    """
    limiter: RateLimiter = request.app.state.limiter
    allowed, retry_after = limiter.take(principal.key, principal.rate_per_minute)
    if not allowed:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit reached for {principal.key}; retry in {retry_after:.1f} s",
            headers=retry_after_header(retry_after),
        )
    return principal


# -- security headers, CORS, body cap -----------------------------------------------------

# The feedback page loads only its own script and style files; nothing inline, no framing.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages run an inline script and load Swagger UI / ReDoc from
# jsDelivr; they get their own, wider policy so they keep working.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_COMMON = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


class SecurityHeadersMiddleware:
    """Adds security headers to every HTTP response (keeping any a route set itself).

    Args:
        app: the ASGI app to wrap.
        docs_paths: paths that get :data:`DOCS_CSP` instead of :data:`PAGE_CSP`.
        no_store_prefix: responses under it get ``Cache-Control: no-store`` (API answers
            carry tokens and people's data; no proxy or browser should keep them).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        docs_paths: tuple[str, ...] = (),
        no_store_prefix: str = "/v1/",
    ) -> None:
        self.app = app
        self.docs_paths = docs_paths
        self.no_store_prefix = no_store_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = [
            *_COMMON,
            ("Content-Security-Policy", DOCS_CSP if path in self.docs_paths else PAGE_CSP),
        ]
        if path.startswith(self.no_store_prefix):
            extra.append(("Cache-Control", "no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security(app: FastAPI, settings: ServeSettings) -> None:
    """Harden ``app``: security headers, CORS for ``settings.cors_origins`` (none by
    default), and a 413 for request bodies over ``settings.max_body_bytes``.

    Call it in the app factory, before the first request. The cap is FastAPI's own
    ``max_body_size`` (outermost, so its 413 may come without the security headers): a
    ``Content-Length`` over the cap is refused before the body is read, and a streamed
    (chunked) body is cut off once it passes the cap.
    """
    from fastapi.middleware.cors import CORSMiddleware

    app.max_body_size = settings.max_body_bytes
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # Bearer tokens, not cookies: no credentials mode needed.
            allow_credentials=False,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    docs = tuple(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    # Added last, so outermost: the headers land on CORS and error responses too.
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=docs)
