"""Authentication and authorisation: secret hashing, JWT access tokens, FastAPI dependencies.

Users (password grant) and clients (client-credentials grant) get a short-lived signed JWT
from ``POST /v1/auth/token``; every protected route asks for one scope through the aliases
at the bottom (``principal: TasksRun``). A token is checked for signature, expiry and
claims, then the account is looked up once per request: a disabled or removed account is
refused at once, and a scope taken away since the token was issued no longer counts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from taskloop.serve.errors import AuthError, ServeConfigError
from taskloop.serve.settings import SCOPES

if TYPE_CHECKING:
    from pwdlib import PasswordHash

PrincipalKind = Literal["user", "client"]
KINDS: tuple[str, ...] = ("user", "client")

# HMAC only: the signing key is one shared secret. Asymmetric algorithms would need a key
# pair, and "none" must never be accepted, whatever the settings say.
ALGORITHMS: tuple[str, ...] = ("HS256", "HS384", "HS512")

_REQUIRED_CLAIMS = ["sub", "kind", "scope", "iat", "exp", "jti"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user or a client, the scopes its token grants, its own rate.

    ``rate_per_minute`` is None for users and for clients on the service default.
    """

    name: str
    kind: PrincipalKind
    scopes: tuple[str, ...]
    rate_per_minute: int | None = None

    @property
    def key(self) -> str:
        """A stable key for rate limiting and logs: ``user:alice``, ``client:etl``."""
        return f"{self.kind}:{self.name}"


# -- secrets ------------------------------------------------------------------------------


@cache
def _hasher() -> PasswordHash:
    # Argon2id with pwdlib's recommended parameters; built on first use (imports argon2).
    from pwdlib import PasswordHash

    return PasswordHash.recommended()


@cache
def _dummy_hash() -> str:
    return _hasher().hash("taskloop-dummy-secret-" + uuid.uuid4().hex)


def hash_secret(secret: str) -> str:
    """The Argon2id hash (PHC string, salted) of a password or client secret."""
    return _hasher().hash(secret)


def verify_secret(secret: str, hashed: str | None) -> bool:
    """Whether ``secret`` matches ``hashed`` (constant-time, inside argon2).

    Pass ``hashed=None`` for an unknown account: a dummy hash is verified instead, so the
    answer takes as long as for a real account and timing does not reveal which exist.
    A stored hash that cannot be parsed counts as a mismatch.
    """
    from pwdlib.exceptions import PwdlibError

    try:
        ok = _hasher().verify(secret, hashed if hashed is not None else _dummy_hash())
    except PwdlibError:
        return False
    return ok and hashed is not None


# -- tokens -------------------------------------------------------------------------------


def check_algorithm(algorithm: str) -> None:
    """Refuse an algorithm other than HMAC-SHA2 (call it at startup to fail early).

    Raises:
        ServeConfigError: ``algorithm`` is not one of :data:`ALGORITHMS`.
    """
    if algorithm not in ALGORITHMS:
        raise ServeConfigError(
            f"JWT algorithm {algorithm!r} is not supported (TASKLOOP_SERVE_JWT_ALGORITHM)",
            hint=f"use one of {', '.join(ALGORITHMS)}",
        )


def create_token(
    subject: str,
    kind: PrincipalKind,
    scopes: list[str] | tuple[str, ...],
    *,
    secret: str,
    algorithm: str = "HS256",
    minutes: int = 60,
    now: datetime | None = None,
) -> tuple[str, int]:
    """Sign an access token for ``subject``.

    Args:
        subject: the username or client id (claim ``sub``).
        kind: "user" or "client" (claim ``kind``).
        scopes: granted scopes (claim ``scope``, space-separated as in RFC 6749).
        secret: the HMAC signing key.
        algorithm: one of :data:`ALGORITHMS`.
        minutes: lifetime; ``exp = iat + minutes``.
        now: the issue time (tests pass one in the past to make an expired token).

    Returns:
        The encoded token and its lifetime in seconds (``expires_in``).

    Raises:
        ServeConfigError: an unsupported algorithm or an empty key.
    """
    import jwt

    check_algorithm(algorithm)
    if not secret:
        raise ServeConfigError("the JWT signing key is empty", hint="set TASKLOOP_SERVE_JWT_SECRET")
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    lifetime = timedelta(minutes=minutes)
    claims: dict[str, Any] = {
        "sub": subject,
        "kind": kind,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=algorithm), int(lifetime.total_seconds())


def decode_token(token: str, *, secret: str, algorithm: str = "HS256") -> Principal:
    """Check a token's signature, algorithm, expiry and claims; the principal it names.

    ``rate_per_minute`` is left None: it is the account's, read from the database.

    Raises:
        AuthError: expired, tampered, signed with another algorithm (``none`` included),
            or missing a claim.
    """
    import jwt

    check_algorithm(algorithm)
    try:
        claims = jwt.decode(
            token, secret, algorithms=[algorithm], options={"require": _REQUIRED_CLAIMS}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("the access token has expired", hint="ask /v1/auth/token again") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError(
            f"the access token is invalid ({exc})", hint="ask /v1/auth/token for a new one"
        ) from exc
    sub, kind, scope = claims["sub"], claims["kind"], claims["scope"]
    if not isinstance(sub, str) or not sub or kind not in KINDS or not isinstance(scope, str):
        raise AuthError("the access token has malformed claims (sub, kind or scope)")
    return Principal(name=sub, kind=kind, scopes=tuple(scope.split()))


# -- FastAPI dependencies -----------------------------------------------------------------

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", scopes=SCOPES, auto_error=False)


def _challenge(scopes: list[str], error: str | None = None) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of RFC 6750 section 3."""
    params = [f'error="{error}"'] if error else []
    if scopes:
        params.append(f'scope="{" ".join(scopes)}"')
    return {"WWW-Authenticate": "Bearer" + (" " + ", ".join(params) if params else "")}


@dataclass(frozen=True)
class _Account:
    disabled: bool
    scopes: frozenset[str]
    rate_per_minute: int | None


def _load_account(request: Request, kind: str, name: str) -> _Account | None:
    """The account behind a token, read once per request (one primary-key lookup)."""
    memo: dict[tuple[str, str], _Account | None] = getattr(request.state, "auth_accounts", {})
    if (kind, name) in memo:
        return memo[(kind, name)]
    from taskloop.serve.storage import repo
    from taskloop.serve.storage.db import session_scope

    account: _Account | None = None
    with session_scope(request.app.state.sessions, readonly=True) as session:
        if kind == "user":
            found_user = repo.get_user(session, name)
            if found_user is not None:
                user = found_user[0]
                account = _Account(user.disabled, frozenset(user.scopes), None)
        else:
            found_client = repo.get_client(session, name)
            if found_client is not None:
                client = found_client[0]
                account = _Account(
                    client.disabled, frozenset(client.scopes), client.rate_per_minute
                )
    memo[(kind, name)] = account
    request.state.auth_accounts = memo
    return account


def current_principal(
    security_scopes: SecurityScopes,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    request: Request,
) -> Principal:
    """The caller, authenticated and holding every scope the route asks for.

    Reads the signing key from ``app.state.jwt_secret``, the algorithm from
    ``app.state.settings`` and the accounts through ``app.state.sessions``.

    Raises:
        HTTPException: 401 without a token, with an invalid or expired one, or for a
            disabled or removed account; 403 when a needed scope is missing.
    """
    needed = list(security_scopes.scopes)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not authenticated", headers=_challenge(needed)
        )
    try:
        claimed = decode_token(
            token,
            secret=request.app.state.jwt_secret,
            algorithm=request.app.state.settings.jwt_algorithm,
        )
    except AuthError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, exc.message, headers=_challenge(needed, "invalid_token")
        ) from None
    account = _load_account(request, claimed.kind, claimed.name)
    if account is None or account.disabled:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"the {claimed.kind} {claimed.name!r} is disabled or no longer exists",
            headers=_challenge(needed, "invalid_token"),
        )
    # A scope taken away since the token was issued no longer counts.
    granted = tuple(s for s in claimed.scopes if s in account.scopes)
    principal = Principal(claimed.name, claimed.kind, granted, account.rate_per_minute)
    missing = [s for s in needed if s not in granted]
    if missing:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the token lacks the scope {' '.join(missing)}",
            headers=_challenge(needed, "insufficient_scope"),
        )
    request.state.principal = principal
    return principal


def require(*scopes: str) -> Any:
    """A dependency type for a route parameter: the caller, holding every one of ``scopes``.

    Use as ``principal: require("tasks:run")`` or through the aliases below.
    """
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; known: {sorted(SCOPES)}")
    return Annotated[Principal, Security(current_principal, scopes=list(scopes))]


TasksRun = Annotated[Principal, Security(current_principal, scopes=["tasks:run"])]
FeedbackWrite = Annotated[Principal, Security(current_principal, scopes=["feedback:write"])]
FeedbackRead = Annotated[Principal, Security(current_principal, scopes=["feedback:read"])]
ModelsAdmin = Annotated[Principal, Security(current_principal, scopes=["models:admin"])]
