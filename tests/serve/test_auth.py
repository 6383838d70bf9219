"""Authentication and authorisation: hashing, JWTs, the scope checks of protected routes,
the rate limit per principal, and ``POST /v1/auth/token`` (RFC 6749 errors)."""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from taskloop.serve.auth import (
    FeedbackRead,
    FeedbackWrite,
    ModelsAdmin,
    Principal,
    TasksRun,
    create_token,
    decode_token,
    hash_secret,
    require,
    verify_secret,
)
from taskloop.serve.errors import AuthError, ServeConfigError
from taskloop.serve.ratelimit import RateLimiter, install_security, rate_limited
from taskloop.serve.routers.auth import router as auth_router
from taskloop.serve.settings import SCOPES, ServeSettings
from taskloop.serve.storage import repo
from taskloop.serve.storage.db import make_engine, session_factory, session_scope, upgrade

SECRET = "test-signing-key-" + "0123456789abcdef" * 3  # 64 bytes: enough for HS512
OTHER_KEY = "another-signing-key-" + "fedcba9876543210" * 3
ALICE_PW = "correct horse battery staple"
ETL_SECRET = "etl-client-secret-value"
Both = require("tasks:run", "feedback:read")


def _claims(**over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {
        "sub": "alice",
        "kind": "user",
        "scope": "tasks:run",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": "j1",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


# -- pure: tokens -------------------------------------------------------------------------


def test_token_round_trip() -> None:
    """60 minutes -> expires_in 3600 s; the claims come back as the principal."""
    token, expires_in = create_token(
        "alice", "user", ["tasks:run", "feedback:write"], secret=SECRET, minutes=60
    )
    assert expires_in == 3600
    p = decode_token(token, secret=SECRET)
    assert p == Principal("alice", "user", ("tasks:run", "feedback:write"))
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["scope"] == "tasks:run feedback:write"
    assert claims["exp"] - claims["iat"] == 3600
    assert len(claims["jti"]) == 32


def test_each_token_has_its_own_jti() -> None:
    a, _ = create_token("c", "client", [], secret=SECRET)
    b, _ = create_token("c", "client", [], secret=SECRET)
    assert (
        jwt.decode(a, SECRET, algorithms=["HS256"])["jti"]
        != jwt.decode(b, SECRET, algorithms=["HS256"])["jti"]
    )


def test_expired_token_refused() -> None:
    """Issued 10 minutes ago for 5 minutes: exp was 5 minutes ago."""
    past = datetime.now(UTC) - timedelta(minutes=10)
    token, _ = create_token("alice", "user", ["tasks:run"], secret=SECRET, minutes=5, now=past)
    with pytest.raises(AuthError, match="expired"):
        decode_token(token, secret=SECRET)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_payload_refused() -> None:
    """A payload granted more scopes, with the original signature: the HMAC no longer fits."""
    token, _ = create_token("alice", "user", ["tasks:run"], secret=SECRET)
    head, body, sig = _segments(token)
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["scope"] = "tasks:run models:admin"
    forged = ".".join([head, _b64(json.dumps(claims).encode()), sig])
    with pytest.raises(AuthError, match="invalid"):
        decode_token(forged, secret=SECRET)


def test_tampered_signature_refused() -> None:
    token, _ = create_token("alice", "user", ["tasks:run"], secret=SECRET)
    head, body, sig = _segments(token)
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[0] ^= 0x01
    with pytest.raises(AuthError):
        decode_token(".".join([head, body, _b64(bytes(raw))]), secret=SECRET)


def test_other_key_refused() -> None:
    token, _ = create_token("alice", "user", ["tasks:run"], secret=OTHER_KEY)
    with pytest.raises(AuthError):
        decode_token(token, secret=SECRET)


def test_alg_none_refused() -> None:
    unsigned = jwt.encode(_claims(), key=None, algorithm="none")
    assert unsigned.endswith(".")
    with pytest.raises(AuthError):
        decode_token(unsigned, secret=SECRET)


def test_other_algorithm_refused() -> None:
    """Signed with HS512 by the same key, checked as HS256: refused (the algorithm is pinned)."""
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    assert decode_token(token, secret=SECRET, algorithm="HS512").name == "alice"
    with pytest.raises(AuthError):
        decode_token(token, secret=SECRET, algorithm="HS256")


@pytest.mark.parametrize("algorithm", ["none", "RS256", "ES256"])
def test_only_hmac_algorithms_configurable(algorithm: str) -> None:
    with pytest.raises(ServeConfigError, match="not supported") as info:
        create_token("a", "user", [], secret=SECRET, algorithm=algorithm)
    assert info.value.hint == "use one of HS256, HS384, HS512"
    with pytest.raises(ServeConfigError):
        decode_token("x.y.z", secret=SECRET, algorithm=algorithm)


@pytest.mark.parametrize("missing", ["sub", "kind", "scope", "iat", "exp", "jti"])
def test_missing_claim_refused(missing: str) -> None:
    token = jwt.encode(_claims(**{missing: None}), SECRET, algorithm="HS256")
    with pytest.raises(AuthError):
        decode_token(token, secret=SECRET)


@pytest.mark.parametrize(("claim", "value"), [("kind", "admin"), ("scope", ["tasks:run"])])
def test_malformed_claim_refused(claim: str, value: Any) -> None:
    token = jwt.encode(_claims(**{claim: value}), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="malformed"):
        decode_token(token, secret=SECRET)


def test_garbage_token_refused() -> None:
    with pytest.raises(AuthError):
        decode_token("not-a-jwt", secret=SECRET)


def test_require_checks_scope_names() -> None:
    with pytest.raises(ValueError, match="tasks:walk"):
        require("tasks:walk")


# -- pure: secrets ------------------------------------------------------------------------


def test_hash_and_verify() -> None:
    hashed = hash_secret("s3cret")
    assert hashed.startswith("$argon2id$")
    assert "s3cret" not in hashed
    assert hash_secret("s3cret") != hashed  # salted
    assert verify_secret("s3cret", hashed)
    assert not verify_secret("s3cret ", hashed)
    assert not verify_secret("", hashed)


def test_unknown_account_and_bad_hash_never_verify() -> None:
    assert not verify_secret("anything", None)
    assert not verify_secret("anything", "not-a-hash")


# -- a tiny app ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database with alice (tasks:run, feedback:write), bob (every scope) and the
    client etl (tasks:run, own rate 30/min); copied for each test (hashing is slow on purpose)."""
    path = tmp_path_factory.mktemp("authdb") / "serve.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(session_factory(engine)) as s:
        repo.create_user(s, "alice", hash_secret(ALICE_PW), ["tasks:run", "feedback:write"])
        repo.create_user(s, "bob", hash_secret("bob-pw"), list(SCOPES))
        repo.create_client(s, "etl", hash_secret(ETL_SECRET), ["tasks:run"], rate_per_minute=30)
    engine.dispose()
    return path


@pytest.fixture
def app(template_db: Path, tmp_path: Path) -> Iterator[FastAPI]:
    path = tmp_path / "serve.db"
    shutil.copy(template_db, path)
    settings = ServeSettings(jwt_secret=SECRET, database_url=f"sqlite:///{path}")
    app = FastAPI()
    engine = make_engine(settings.database_url)
    app.state.settings = settings
    app.state.jwt_secret = settings.resolved_jwt_secret()
    app.state.sessions = session_factory(engine)
    app.state.clock = FakeClock()
    app.state.limiter = RateLimiter(60, 2, clock=app.state.clock)
    install_security(app, settings)
    app.include_router(auth_router)
    limited = [Depends(rate_limited)]

    def out(p: Principal) -> dict[str, Any]:
        return {"name": p.name, "kind": p.kind, "scopes": list(p.scopes)}

    @app.get("/v1/run", dependencies=limited)
    def run(p: TasksRun) -> dict[str, Any]:
        return out(p)

    @app.get("/v1/write")
    def write(p: FeedbackWrite) -> dict[str, Any]:
        return out(p)

    @app.get("/v1/read")
    def read(p: FeedbackRead) -> dict[str, Any]:
        return out(p)

    @app.get("/v1/admin")
    def admin(p: ModelsAdmin) -> dict[str, Any]:
        return out(p)

    @app.get("/v1/both")
    def both(p: Both) -> dict[str, Any]:
        return out(p)

    yield app
    engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def _bearer(name: str, scopes: list[str], kind: str = "user", **kw: Any) -> dict[str, str]:
    token, _ = create_token(name, kind, scopes, secret=SECRET, **kw)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


ROUTES = {
    "/v1/run": "tasks:run",
    "/v1/write": "feedback:write",
    "/v1/read": "feedback:read",
    "/v1/admin": "models:admin",
}


def test_no_token_is_401(client: TestClient) -> None:
    """The challenge names the scope the route needs (RFC 6750). On /v1/run the router-level
    rate_limited dependency authenticates first, without the route's scopes."""
    r = client.get("/v1/write")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer scope="feedback:write"'
    r = client.get("/v1/run")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_401(client: TestClient) -> None:
    past = datetime.now(UTC) - timedelta(minutes=10)
    for path in ("/v1/run", "/v1/write"):
        headers = _bearer("alice", ["tasks:run", "feedback:write"], minutes=5, now=past)
        r = client.get(path, headers=headers)
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]
        assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_tampered_token_is_401(client: TestClient) -> None:
    headers = _bearer("alice", ["tasks:run"])
    headers["Authorization"] = headers["Authorization"][:-3] + (
        "AAA" if not headers["Authorization"].endswith("AAA") else "BBB"
    )
    assert client.get("/v1/run", headers=headers).status_code == 401
    other = jwt.encode(_claims(), OTHER_KEY, algorithm="HS256")
    assert client.get("/v1/run", headers={"Authorization": f"Bearer {other}"}).status_code == 401


@pytest.mark.parametrize(("path", "scope"), list(ROUTES.items()))
def test_each_route_wants_its_scope(client: TestClient, path: str, scope: str) -> None:
    """bob holds every scope; a token with only ``scope`` opens its route (200) and no other
    (403 insufficient_scope naming the scope that route needs)."""
    headers = _bearer("bob", [scope])
    r = client.get(path, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "bob", "kind": "user", "scopes": [scope]}
    for other, needed in ROUTES.items():
        if other != path:
            r = client.get(other, headers=headers)
            assert r.status_code == 403
            assert r.headers["www-authenticate"] == (
                f'Bearer error="insufficient_scope", scope="{needed}"'
            )


def test_two_scopes_needed(client: TestClient) -> None:
    assert client.get("/v1/both", headers=_bearer("bob", ["tasks:run"])).status_code == 403
    headers = _bearer("bob", ["tasks:run", "feedback:read"])
    assert client.get("/v1/both", headers=headers).status_code == 200


def test_rate_limited_after_burst(client: TestClient, app: FastAPI) -> None:
    """User bucket at the default 60/min, burst 2, frozen clock: 200, 200, then 429 with
    Retry-After = (1 - 0) / (60/60) = 1 s. One second later one request passes again."""
    headers = _bearer("alice", ["tasks:run"])
    assert [client.get("/v1/run", headers=headers).status_code for _ in range(2)] == [200, 200]
    r = client.get("/v1/run", headers=headers)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    app.state.clock.now += 1.0
    assert client.get("/v1/run", headers=headers).status_code == 200


def test_client_own_rate(client: TestClient, app: FastAPI) -> None:
    """Client etl has its own 30/min = 0.5 token/s (from the database), burst 2:
    the third call waits (1 - 0) / 0.5 = 2 s."""
    headers = _bearer("etl", ["tasks:run"], kind="client")
    assert [client.get("/v1/run", headers=headers).status_code for _ in range(2)] == [200, 200]
    r = client.get("/v1/run", headers=headers)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    # alice has her own bucket.
    assert client.get("/v1/run", headers=_bearer("alice", ["tasks:run"])).status_code == 200


def test_unauthenticated_requests_spend_no_bucket(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/v1/run").status_code == 401
    headers = _bearer("alice", ["tasks:run"])
    assert client.get("/v1/run", headers=headers).status_code == 200


def _change(app: FastAPI, **kw: Any) -> None:
    with session_scope(app.state.sessions) as s:
        repo.set_user(s, "alice", **kw)


def test_disabled_user_refused_at_once(client: TestClient, app: FastAPI) -> None:
    headers = _bearer("alice", ["tasks:run"])
    assert client.get("/v1/write", headers=_bearer("alice", ["feedback:write"])).status_code == 200
    _change(app, disabled=True)
    r = client.get("/v1/write", headers=_bearer("alice", ["feedback:write"]))
    assert r.status_code == 401
    assert "disabled" in r.json()["detail"]
    _change(app, disabled=False)
    assert client.get("/v1/run", headers=headers).status_code == 200


def test_removed_user_refused(client: TestClient, app: FastAPI) -> None:
    with session_scope(app.state.sessions) as s:
        repo.delete_user(s, "alice")
    assert client.get("/v1/write", headers=_bearer("alice", ["feedback:write"])).status_code == 401


def test_scope_taken_away_stops_counting(client: TestClient, app: FastAPI) -> None:
    headers = _bearer("alice", ["tasks:run", "feedback:write"])
    _change(app, scopes=["tasks:run"])
    assert client.get("/v1/write", headers=headers).status_code == 403


def test_token_for_unknown_kind_of_account(client: TestClient) -> None:
    """A well-signed token for a client id that does not exist (a user named etl does not
    make client etl, and the other way round)."""
    assert (
        client.get("/v1/run", headers=_bearer("alice", ["tasks:run"], "client")).status_code == 401
    )


# -- POST /v1/auth/token ------------------------------------------------------------------


def _token(client: TestClient, auth: tuple[str, str] | None = None, **form: str) -> Any:
    return client.post("/v1/auth/token", data=form, auth=auth)


def test_password_grant(client: TestClient) -> None:
    """No scope asked: all of alice's; the token opens her routes; never cached."""
    r = _token(client, grant_type="password", username="alice", password=ALICE_PW)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 60 * 60
    assert body["scope"] == "tasks:run feedback:write"
    assert r.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/v1/write", headers=headers).status_code == 200
    assert client.get("/v1/read", headers=headers).status_code == 403


def test_scope_narrowed_to_a_subset(client: TestClient) -> None:
    r = _token(
        client, grant_type="password", username="alice", password=ALICE_PW, scope="feedback:write"
    )
    assert r.json()["scope"] == "feedback:write"
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1/run", headers=headers).status_code == 403


@pytest.mark.parametrize("scope", ["models:admin", "tasks:run models:admin", "nonsense"])
def test_scope_outside_the_accounts_is_invalid_scope(client: TestClient, scope: str) -> None:
    r = _token(client, grant_type="password", username="alice", password=ALICE_PW, scope=scope)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(("username", "password"), [("alice", "wrong"), ("nobody", ALICE_PW)])
def test_bad_password_is_invalid_grant(client: TestClient, username: str, password: str) -> None:
    r = _token(client, grant_type="password", username=username, password=password)
    assert r.status_code == 400
    assert r.json() == {
        "error": "invalid_grant",
        "error_description": "wrong username or password, or user disabled",
    }


def test_disabled_user_gets_no_token(client: TestClient, app: FastAPI) -> None:
    _change(app, disabled=True)
    r = _token(client, grant_type="password", username="alice", password=ALICE_PW)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_client_credentials_in_form(client: TestClient) -> None:
    r = _token(client, grant_type="client_credentials", client_id="etl", client_secret=ETL_SECRET)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "tasks:run"
    claims = jwt.decode(r.json()["access_token"], SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["kind"]) == ("etl", "client")


def test_client_credentials_in_basic(client: TestClient) -> None:
    r = _token(client, auth=("etl", ETL_SECRET), grant_type="client_credentials")
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1/run", headers=headers).json()["kind"] == "client"


def test_bad_client_secret_is_invalid_client(client: TestClient) -> None:
    r = _token(client, auth=("etl", "wrong"), grant_type="client_credentials")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    r = _token(client, grant_type="client_credentials", client_id="ghost", client_secret="x")
    assert r.status_code == 401


def test_malformed_basic_is_invalid_client(client: TestClient) -> None:
    r = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic !!!notbase64"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
        ({"grant_type": "password", "username": "alice", "password": ""}, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": "etl"}, "invalid_request"),
    ],
)
def test_malformed_requests(client: TestClient, form: dict[str, str], error: str) -> None:
    r = _token(client, **form)
    assert r.status_code == 400
    assert r.json()["error"] == error


def test_client_credentials_two_ways_at_once(client: TestClient) -> None:
    r = _token(
        client,
        auth=("etl", ETL_SECRET),
        grant_type="client_credentials",
        client_id="etl",
        client_secret=ETL_SECRET,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_failed_attempts_throttled(client: TestClient, app: FastAPI) -> None:
    """A failure limiter at 1/min, burst 1 (frozen clock): the first wrong password spends the
    only token; the next attempt, even with the right password, is 429 for 60 / 1 = 60 s.
    Another account is not affected."""
    app.state.auth_failures = RateLimiter(1, 1, clock=app.state.clock)
    assert _token(client, grant_type="password", username="alice", password="x").status_code == 400
    r = _token(client, grant_type="password", username="alice", password=ALICE_PW)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "60"
    assert (
        _token(client, grant_type="password", username="bob", password="bob-pw").status_code == 200
    )
    app.state.clock.now += 60
    r = _token(client, grant_type="password", username="alice", password=ALICE_PW)
    assert r.status_code == 200


def test_secrets_never_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _token(client, grant_type="password", username="alice", password=ALICE_PW)
    _token(client, grant_type="password", username="alice", password="guess-" + ALICE_PW)
    _token(client, auth=("etl", ETL_SECRET), grant_type="client_credentials")
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "alice" in text  # the events are logged...
    assert ALICE_PW not in text and ETL_SECRET not in text  # ...without the secrets


def test_openapi_declares_the_oauth2_flow(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/v1/auth/token"
    assert set(flows["password"]["scopes"]) == set(SCOPES)
    assert schema["paths"]["/v1/admin"]["get"]["security"] == [
        {"OAuth2PasswordBearer": ["models:admin"]}
    ]
