"""The HTTP API end to end in-process: every route's authentication and scopes, tasks,
blobs and jobs, feedback and its export, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from taskloop.serve.app import create_app
from taskloop.serve.settings import SCOPES, ServeSettings

OPEN = {
    "/livez",
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/docs/oauth2-redirect",
    "/redoc",
    "/",
    "/v1/auth/token",
}
QA_ROW = {
    "question": "Which river flows through Vienna?",
    "context": "Vienna lies on the Danube. Graz lies on the Mur.",
}


def _add_user(app, name: str, password: str, scopes: list[str]) -> None:
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    with app.state.sessions() as s:
        repo.create_user(s, name, hash_secret(password), scopes)
        s.commit()


def _token(client: TestClient, name: str, password: str, scope: str | None = None) -> str:
    form = {"grant_type": "password", "username": name, "password": password}
    if scope:
        form["scope"] = scope
    r = client.post("/v1/auth/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("serve")
    settings = ServeSettings(
        database_url=f"sqlite:///{tmp / 'serve.db'}",
        jwt_secret="a-test-secret-that-is-long-enough-for-hs256",
        rate_per_minute=10_000,
        rate_burst=1_000,
        max_sync_blob_bytes=10_000_000,
    )
    app = create_app(settings, warm_up=False)
    _add_user(app, "ann", "pw-ann", list(SCOPES))
    _add_user(app, "rater", "pw-rater", ["feedback:write"])
    with TestClient(app) as c:
        yield c


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_but_health_metrics_and_docs_needs_a_token(client: TestClient):
    """Walk the OpenAPI schema: every operation outside OPEN answers 401 without a token."""
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, ops in paths.items():
        if path in OPEN:
            continue
        for method in ops:
            url = path.replace("{task}", "qa").replace("{job_id}", "x")
            r = client.request(method.upper(), url, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers.get("www-authenticate", "").startswith("Bearer")
            checked += 1
    assert checked >= 6


def test_wrong_scope_is_403_and_tampered_or_expired_token_is_401(client: TestClient):
    rater = _token(client, "rater", "pw-rater")
    assert client.post("/v1/tasks/qa", json=QA_ROW, headers=_auth(rater)).status_code == 403
    assert client.get("/v1/feedback/export", headers=_auth(rater)).status_code == 403
    tampered = rater[:-2] + ("A" if rater[-2] != "A" else "B") + rater[-1]
    assert client.get("/v1/feedback/queue", headers=_auth(tampered)).status_code == 401
    import jwt

    expired = jwt.encode(
        {"sub": "rater", "kind": "user", "scope": "feedback:write", "iat": 1, "exp": 2, "jti": "x"},
        "a-test-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    assert client.get("/v1/feedback/queue", headers=_auth(expired)).status_code == 401
    r = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": "rater", "password": "wrong"}
    )
    assert r.status_code in (400, 401) and "pw-rater" not in r.text


def test_a_task_answer_is_stored_and_rated_and_exported(client: TestClient):
    token = _token(client, "ann", "pw-ann")
    r = client.post("/v1/tasks/qa", json=QA_ROW, headers=_auth(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "the Danube" or "Danube" in body["output"]
    assert body["status"] in ("ok", "flagged") and body["prediction_id"]
    pid = body["prediction_id"]
    # QA's confidence is stored with the scores (active learning's low-confidence signal)
    from taskloop.serve.storage import repo

    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        stored = repo.get_prediction(s, pid)
    assert 0.0 <= stored.scores["confidence"] <= 1.0
    fb = client.post(
        "/v1/feedback",
        headers=_auth(token),
        json={"prediction_id": pid, "kind": "thumbs", "thumbs": "up"},
    )
    assert fb.status_code == 201, fb.text
    assert fb.json()["rater"] == "ann"
    missing = client.post(
        "/v1/feedback",
        headers=_auth(token),
        json={"prediction_id": "nope", "kind": "thumbs", "thumbs": "up"},
    )
    assert missing.status_code in (404, 422) and "nope" in missing.json()["message"]
    export = client.get("/v1/feedback/export?shape=thumbs", headers=_auth(token))
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert any(row["label"] is True and "Danube" in row["completion"] for row in rows)
    bad = client.post("/v1/tasks/qa", json={"question": "q"}, headers=_auth(token))
    assert bad.status_code == 422 and "context" in bad.json()["message"]


def test_a_blob_runs_and_its_job_holds_the_result(client: TestClient, tmp_path: Path):
    from taskloop.blob import decode_utf8_blob_to_zip, encode_zip_to_utf8_blob
    from tests.conftest import make_zip, read_zip

    token = _token(client, "ann", "pw-ann")
    rows = json.dumps(QA_ROW) + "\n"
    blob = encode_zip_to_utf8_blob(make_zip({"data/qa.jsonl": rows.encode()}))
    r = client.post("/v1/blobs", json={"blob": blob}, headers=_auth(token))
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["status"] == "done", job
    files = read_zip(decode_utf8_blob_to_zip(job["result"]))
    assert "results.jsonl" in files and "Danube" in files["results.jsonl"].decode()
    again = client.get(f"/v1/jobs/{job['id']}", headers=_auth(token))
    assert again.status_code == 200 and again.json()["status"] == "done"
    assert client.get("/v1/jobs/unknown", headers=_auth(token)).status_code == 404


def test_health_and_metrics_need_no_token(client: TestClient):
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    text = client.get("/metrics").text
    assert "taskloop_requests_total" in text and "taskloop_request_seconds_bucket" in text


def test_auth_and_unknown_path_errors_have_the_common_body(client: TestClient):
    """401, 403 and 404 answer {code, message, hint} like every other error, and keep
    their headers."""
    r = client.post("/v1/tasks/qa", json=QA_ROW)
    assert r.status_code == 401 and r.json()["code"] == "serve.auth"
    assert r.headers["www-authenticate"].startswith("Bearer")
    rater = _token(client, "rater", "pw-rater")
    r = client.get("/v1/feedback/export", headers=_auth(rater))
    assert r.status_code == 403 and r.json()["code"] == "serve.forbidden"
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and set(r.json()) == {"code", "message", "hint"}


def test_drift_and_models_need_models_admin(client: TestClient):
    """Served inputs fill the drift reference window (200 by default): "waiting" until
    both windows are full. A token without models:admin is refused."""
    token = _token(client, "ann", "pw-ann")
    client.post("/v1/tasks/qa", json=QA_ROW, headers=_auth(token))
    r = client.get("/v1/drift", headers=_auth(token))
    assert r.status_code == 200 and r.json()["status"] == "waiting"
    assert r.json()["reference_size"] >= 1
    models = client.get("/v1/models", headers=_auth(token)).json()
    assert {m["task"] for m in models} == {"codegen", "qa", "summarize", "translate"}
    rater = _token(client, "rater", "pw-rater")
    assert client.get("/v1/drift", headers=_auth(rater)).status_code == 403
