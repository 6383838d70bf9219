"""The learning loop end to end, as a user runs it after a fresh install: serve a
registered champion, collect ratings (people over the API, the simulator), queue
ambiguous inputs, train a reward model, run PPO, gate the challenger against the
champion, and roll back, with the running service following the registry each time.

Every step is a documented command (docs/learning-loop.md) run through the real CLI;
the models are tiny ones built from config so the whole loop takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from taskloop.cli import app as cli
from taskloop.models.tiny import build_tiny_model
from taskloop.serve.app import create_app
from taskloop.serve.settings import SCOPES, ServeSettings

SOURCES = [
    "A dog is running across the green meadow.",
    "The model runs on a single GPU.",
    "Children play in the park.",
    "The council voted seven to two.",
    "A dog is running in the park.",
    "The model answers questions about short documents.",
]
GERMAN = [
    "Ein Hund rennt über die grüne Wiese.",
    "Das Modell läuft auf einer einzigen GPU.",
    "Kinder spielen im Park.",
    "Der Rat stimmte sieben zu zwei.",
    "Ein Hund rennt im Park.",
    "Das Modell beantwortet Fragen zu kurzen Texten.",
]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, ["--quiet", *args])
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def _json(*args: str) -> dict:
    return json.loads(_cli(*args, "--json"))


@pytest.mark.slow
def test_the_loop_from_ratings_to_a_gated_challenger(tmp_path: Path) -> None:
    # --- a registered champion -------------------------------------------------------
    model = build_tiny_model(tmp_path / "mt", "seq2seq", texts=SOURCES + GERMAN, seed=1)
    _cli("models", "register", str(model), "--name", "mt", "--alias", "champion")

    # --- serve it and collect ratings from people -----------------------------------
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    settings = ServeSettings(
        database_url=db,
        jwt_secret="a-test-secret-that-is-long-enough-for-hs256",
        models={"translate": "models:/mt@champion"},
        rate_per_minute=10_000,
        rate_burst=1_000,
    )
    service = create_app(settings, warm_up=False)
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    with service.state.sessions() as s:
        repo.create_user(s, "ann", hash_secret("pw"), list(SCOPES))
        s.commit()
    with TestClient(service) as client:
        token = client.post(
            "/v1/auth/token", data={"grant_type": "password", "username": "ann", "password": "pw"}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ids = []
        for source, target in zip(SOURCES, GERMAN, strict=True):
            row = {"source": source, "target": target, "source_lang": "en", "target_lang": "de"}
            r = client.post("/v1/tasks/translate", json=row, headers=auth)
            assert r.status_code == 200, r.text
            ids.append(r.json()["prediction_id"])
        champion_version = r.json()["model"]
        for i, pid in enumerate(ids[:4]):  # people rate four; two are left for the queue
            body = {"prediction_id": pid, "kind": "thumbs", "thumbs": "up" if i % 2 else "down"}
            assert client.post("/v1/feedback", json=body, headers=auth).status_code == 201

        # --- the simulator rates the same answers; the queue asks people first -------
        simulated = _json("rlhf", "simulate", "--database-url", db)
        assert simulated["rated"] == len(ids)
        data = tmp_path / "rows.jsonl"
        data.write_text(
            "".join(
                json.dumps({"source": s, "target": t, "source_lang": "en", "target_lang": "de"})
                + "\n"
                for s, t in zip(SOURCES, GERMAN, strict=True)
            ),
            encoding="utf-8",
        )

        # --- a reward model from the store (human and simulated ratings) -------------
        reward = _json(
            "rlhf", "reward", "--from-store", "--database-url", db, "--out",
            str(tmp_path / "rm"), "--epochs", "1", "--valid-fraction", "0.34",
        )  # fmt: skip
        reward_dir = Path(reward["model"])
        assert (reward_dir / "config.json").is_file()

        queued = _json(
            "rlhf", "queue", "--database-url", db, "--reward-model", str(reward_dir), "--k", "2"
        )
        assert {q["prediction_id"] for q in queued["selected"]} == set(ids[4:])
        page = client.get("/v1/feedback/queue?limit=10", headers=auth).json()
        assert [item["queued"] for item in page[:3]] == [True, True, False]
        assert {item["prediction_id"] for item in page[:2]} == set(ids[4:])

        # --- PPO on the champion: the result is registered as challenger -------------
        ppo = _json(
            "rlhf", "ppo", "--policy", "models:/mt@champion", "--data", str(data),
            "--task", "translate", "--reward-model", str(reward_dir), "--verifiable",
            "format=1", "--out", str(tmp_path / "ppo"), "--steps", "2", "--batch-size", "4",
            "--mini-batch-size", "2", "--ppo-epochs", "1", "--max-new-tokens", "6",
            "--register", "mt",
        )  # fmt: skip
        assert len(ppo["steps"]) == 2
        models = _json("models", "show", "mt")
        assert models["aliases"]["challenger"] == 2 and models["aliases"]["champion"] == 1

        # --- the gate: two near-random tiny models are not significantly different ---
        gate = _json(
            "retrain", "gate", "mt", "--task", "translate", "--probe", str(data),
            "--out", str(tmp_path / "gate"),
        )  # fmt: skip
        assert gate["decision"] == "kept", gate
        assert _json("models", "show", "mt")["aliases"]["champion"] == 1

        # --- promote by hand, then roll back: the service follows without a restart --
        _cli("models", "promote", "mt")
        row = {"source": SOURCES[0], "source_lang": "en", "target_lang": "de"}
        promoted = client.post("/v1/tasks/translate", json=row, headers=auth).json()["model"]
        assert promoted != champion_version
        _cli("models", "rollback", "mt")
        back = client.post("/v1/tasks/translate", json=row, headers=auth).json()["model"]
        assert back == champion_version
