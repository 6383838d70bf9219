"""Schemathesis against the OpenAPI schema, in-process: generated requests (valid and
invalid) to every operation, with a token holding every scope, never get a 5xx."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from taskloop.serve.app import create_app
from taskloop.serve.settings import SCOPES, ServeSettings

_tmp = Path(tempfile.mkdtemp(prefix="taskloop-fuzz-"))
atexit.register(shutil.rmtree, _tmp, ignore_errors=True)  # made at collection, not a fixture
_SECRET = "schema-fuzz-secret-long-enough-for-hs256"
app = create_app(
    ServeSettings(
        database_url=f"sqlite:///{_tmp / 'serve.db'}",
        jwt_secret=_SECRET,
        rate_per_minute=100_000,
        rate_burst=100_000,
    ),
    warm_up=False,
)
app.state.service.ready = True  # no lifespan under the fuzzer's transport: ready at once
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


def _token() -> str:
    from taskloop.serve.auth import create_token

    token, _ = create_token("fuzzer", "user", list(SCOPES), secret=_SECRET, minutes=60)
    return token


@pytest.fixture(scope="module", autouse=True)
def _user() -> None:
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    with app.state.sessions() as s:
        if repo.get_user(s, "fuzzer") is None:
            repo.create_user(s, "fuzzer", hash_secret("pw"), list(SCOPES))


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {_token()}"}
    response = case.call()
    assert response.status_code < 500, (
        case.method,
        case.path,
        response.status_code,
        response.text[:500],
    )
