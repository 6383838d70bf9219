"""A running service follows the registry: promotion and rollback of ``champion`` reach
the next request without a restart.

The service is configured with ``models:/NAME@champion`` for translate. Its task models
are loaded per batch through :func:`taskloop.models.loader.load_model`, which asks the
registry where the alias points on every call and caches by the resolved version's
folder. Two tiny seq2seq models with different weights (seeds 1 and 2) are versions 1
and 2 of one name; the stored prediction's ``model_version`` (the loaded folder's
content hash) says which one answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from taskloop.models.loader import content_version
from taskloop.models.registry import log_run, promote, resolve_uri, rollback
from taskloop.models.tiny import build_tiny_model
from taskloop.serve.app import create_app
from taskloop.serve.settings import ServeSettings

NAME = "reload-translate"
ROW = {"source": "A dog is running across the green meadow.", "target_lang": "de"}


def _register(folder: Path, seed: int) -> int:
    record = log_run(
        experiment="tests",
        run_name=f"tiny-seed-{seed}",
        config={"seed": seed},
        model_dir=folder,
        register_as=NAME,
        alias="challenger",
    )
    assert record.version is not None
    return record.version


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, dict[int, str]]]:
    """The app on translate = models:/NAME@champion, v1 champion; with each version's
    expected ``model_version`` (the first 12 hex of its folder's content hash)."""
    versions: dict[int, str] = {}
    for seed in (1, 2):
        folder = build_tiny_model(tmp_path / f"m{seed}", "seq2seq", seed=seed)
        number = _register(folder, seed)
        versions[number] = content_version(resolve_uri(f"models:/{NAME}/{number}"))[:12]
    assert sorted(versions) == [1, 2] and versions[1] != versions[2]
    promote(NAME, 1)
    settings = ServeSettings(
        database_url=f"sqlite:///{tmp_path / 'serve.db'}",
        jwt_secret="a-test-secret-that-is-long-enough-for-hs256",
        models={"translate": f"models:/{NAME}@champion"},
        drift_window=10_000,
    )
    app = create_app(settings, warm_up=True)
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    with app.state.sessions() as s:
        repo.create_user(s, "ops", hash_secret("pw-ops"), ["tasks:run", "models:admin"])
    with TestClient(app) as client:
        yield client, versions


def _ask(client: TestClient) -> tuple[str | None, str | None]:
    """(model description of the answer, stored model_version of its prediction)."""
    form = {"grant_type": "password", "username": "ops", "password": "pw-ops"}
    token = client.post("/v1/auth/token", data=form).json()["access_token"]
    r = client.post("/v1/tasks/translate", json=ROW, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body = r.json()
    from taskloop.serve.storage import repo

    with client.app.state.sessions() as s:
        stored = repo.get_prediction(s, body["prediction_id"])
    assert stored.model == body["model"]
    return body["model"], stored.model_version


def _answered_by(model_version: str | None, versions: dict[int, str]) -> int:
    assert model_version is not None
    hits = [n for n, digest in versions.items() if digest == model_version]
    assert len(hits) == 1, (model_version, versions)
    return hits[0]


def test_promotion_and_rollback_reach_the_running_service(
    served: tuple[TestClient, dict[int, str]],
):
    """v1 answers; promote v2 -> the next request is answered by v2; rollback -> v1 again.
    Same app object, same process: nothing restarted or reloaded by hand."""
    client, versions = served
    model, version = _ask(client)
    assert model is not None and model.startswith(f"models:/{NAME}@champion")
    assert _answered_by(version, versions) == 1

    promote(NAME, 2)
    _, version = _ask(client)
    assert _answered_by(version, versions) == 2

    back = rollback(NAME)
    assert (back.version, back.previous) == (1, 2)
    _, version = _ask(client)
    assert _answered_by(version, versions) == 1
