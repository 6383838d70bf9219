"""``POST /v1/auth/token``: access tokens for users (password grant) and clients
(client-credentials grant), with errors as RFC 6749 section 5.2 spells them."""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Annotated, Literal
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from taskloop.log import logger
from taskloop.serve.auth import PrincipalKind, create_token, verify_secret
from taskloop.serve.ratelimit import RateLimiter, retry_after_header
from taskloop.serve.settings import SCOPES

router = APIRouter(prefix="/v1/auth", tags=["auth"])

# Failed sign-ins per account: 10 a minute, then one more every 6 seconds. Argon2 already
# makes each guess slow; this stops a patient guesser (at the price that someone who
# floods an account name delays its owner's sign-in for as long as the flood lasts).
FAILURES_PER_MINUTE = 10
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_failures_lock = threading.Lock()


class TokenOut(BaseModel):
    """An access token (RFC 6749 section 5.1)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the type name, not a secret)
    expires_in: int
    scope: str


class TokenError(BaseModel):
    """A token request refused (RFC 6749 section 5.2)."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str


def _error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**_NO_STORE, **(headers or {})},
    )


def _failures(request: Request) -> RateLimiter:
    """The per-app limiter of failed sign-ins (made on first use)."""
    state = request.app.state
    with _failures_lock:
        limiter: RateLimiter | None = getattr(state, "auth_failures", None)
        if limiter is None:
            limiter = state.auth_failures = RateLimiter(FAILURES_PER_MINUTE, FAILURES_PER_MINUTE)
    return limiter


def _basic_credentials(request: Request) -> tuple[str, str] | Literal[False] | None:
    """Client id and secret from ``Authorization: Basic`` (RFC 6749 section 2.3.1: both
    form-urlencoded, then base64); None without the header, False when it is malformed."""
    header = request.headers.get("authorization", "")
    scheme, _, param = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return False
    return unquote_plus(client_id), unquote_plus(secret)


def _lookup(request: Request, kind: PrincipalKind, name: str) -> tuple[str | None, list[str], bool]:
    """(hash or None when unknown, scopes, disabled) of an account."""
    from taskloop.serve.storage import repo
    from taskloop.serve.storage.db import session_scope

    with session_scope(request.app.state.sessions, readonly=True) as session:
        if kind == "user":
            user = repo.get_user(session, name)
            if user is None:
                return None, [], False
            return user[1], list(user[0].scopes), user[0].disabled
        client = repo.get_client(session, name)
        if client is None:
            return None, [], False
        return client[1], list(client[0].scopes), client[0].disabled


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Get an access token",
    responses={
        400: {"model": TokenError, "description": "bad request, grant or scope"},
        401: {"model": TokenError, "description": "bad client credentials"},
        429: {"model": TokenError, "description": "too many failed attempts"},
    },
)
def token(
    request: Request,
    response: Response,
    grant_type: Annotated[str | None, Form(description="password or client_credentials")] = None,
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    scope: Annotated[str, Form(description="space-separated; empty = all of yours")] = "",
) -> TokenOut | JSONResponse:
    """Exchange a username and password (``grant_type=password``) or a client id and
    secret (``grant_type=client_credentials``; form fields or HTTP Basic) for a bearer
    token. ``scope`` narrows the token to some of the account's scopes."""
    kind: PrincipalKind
    if grant_type == "password":
        if not username or password is None:
            return _error(400, "invalid_request", "the password grant needs username and password")
        kind, name, secret = "user", username, password
    elif grant_type == "client_credentials":
        basic = _basic_credentials(request)
        if basic is False:
            return _error(
                401,
                "invalid_client",
                "malformed Basic credentials",
                {"WWW-Authenticate": 'Basic realm="taskloop"'},
            )
        if basic is not None and (client_id or client_secret):
            return _error(
                400, "invalid_request", "send client credentials one way: Basic or form fields"
            )
        if basic is not None:
            client_id, client_secret = basic
        if not client_id or client_secret is None:
            return _error(
                400,
                "invalid_request",
                "the client_credentials grant needs client_id and client_secret",
            )
        kind, name, secret = "client", client_id, client_secret
    elif not grant_type:
        return _error(400, "invalid_request", "grant_type is missing")
    else:
        return _error(
            400, "unsupported_grant_type", "grant_type must be password or client_credentials"
        )

    failures = _failures(request)
    failure_key = f"{kind}:{name}"
    wait = failures.peek(failure_key)
    if wait > 0:
        return _error(
            429,
            "invalid_request",
            "too many failed attempts for this account",
            retry_after_header(wait),
        )

    hashed, granted, disabled = _lookup(request, kind, name)
    # verify_secret(…, None) checks a dummy hash: an unknown name costs the same time.
    if not verify_secret(secret, hashed) or disabled:
        failures.take(failure_key)
        # The name is logged to spot guessing; the secret never is.
        logger.info("token refused", extra={"event": "auth.refused", "kind": kind, "subject": name})
        if kind == "client":
            return _error(
                401,
                "invalid_client",
                "unknown client, wrong secret, or client disabled",
                {"WWW-Authenticate": 'Basic realm="taskloop"'},
            )
        return _error(400, "invalid_grant", "wrong username or password, or user disabled")

    known = [s for s in granted if s in SCOPES]
    requested = scope.split()
    if requested:
        outside = [s for s in requested if s not in known]
        if outside:
            return _error(
                400,
                "invalid_scope",
                f"scope(s) {' '.join(outside)} not granted to this {kind}; "
                f"yours: {' '.join(known) or '(none)'}",
            )
        known = [s for s in known if s in requested]

    settings = request.app.state.settings
    access, expires_in = create_token(
        name,
        kind,
        known,
        secret=request.app.state.jwt_secret,
        algorithm=settings.jwt_algorithm,
        minutes=settings.token_minutes,
    )
    logger.info(
        "token issued",
        extra={"event": "auth.token", "kind": kind, "subject": name, "scope": " ".join(known)},
    )
    response.headers.update(_NO_STORE)
    return TokenOut(access_token=access, expires_in=expires_in, scope=" ".join(known))
