"""``taskloop rlhf queue`` end to end on a real SQLite store and on task-row files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.errors import ExitStatus
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, upgrade

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """A migrated SQLite store with five QA predictions of stored confidence 0.9, 0.1,
    0.5, 0.3, 0.7 (p0..p4); p1 already rated thumbs up by a person."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    with factory() as s:
        for i, conf in enumerate([0.9, 0.1, 0.5, 0.3, 0.7]):
            value = {"question": f"Question number {i}?", "context": "Vienna lies on the Danube."}
            repo.add_prediction(
                s,
                PredictionRecord(
                    id=f"p{i}",
                    task="qa",
                    input_hash=repo.hash_input(value),
                    input=value,
                    output=f"answer {i}",
                    status="ok",
                    scores={"confidence": conf},
                ),
            )
        repo.add_feedback(s, FeedbackIn(prediction_id="p1", kind="thumbs", thumbs="up"), "ann")
    yield url, factory
    engine.dispose()


def _queue(factory: sessionmaker[Session]) -> list[dict]:
    with factory() as s:
        return repo.queue_items(s, 100)


def test_queue_from_the_store_takes_the_least_confident_unrated_answers(db):
    """Unrated: p0 0.9, p2 0.5, p3 0.3, p4 0.7 -> low confidence 0.1, 0.5, 0.7, 0.3; the top
    two are p3 (0.7) and p2 (0.5). p1 (0.1, the least confident) was rated: left out."""
    url, factory = db
    r = runner.invoke(app, ["rlhf", "queue", "--database-url", url, "--k", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["candidates"] == 4 and out["already_queued"] == 0 and not out["dry_run"]
    assert [s["prediction_id"] for s in out["selected"]] == ["p3", "p2"]
    assert [s["priority"] for s in out["selected"]] == pytest.approx([0.7, 0.5])
    queued = _queue(factory)
    assert [(q["prediction_id"], q["reason"]) for q in queued] == [
        ("p3", "model unsure of its answer (0.70)"),
        ("p2", "model unsure of its answer (0.50)"),
    ]
    assert [q["id"] for q in queued] == [s["queue_id"] for s in out["selected"]]
    # a second run leaves the queued inputs out and takes the next ones
    r = runner.invoke(app, ["rlhf", "queue", "--database-url", url, "--k", "5", "--json"])
    again = json.loads(r.stdout)
    assert again["already_queued"] == 2
    assert [s["prediction_id"] for s in again["selected"]] == ["p4", "p0"]
    assert len(_queue(factory)) == 4


def test_dry_run_prints_the_table_and_writes_nothing(db):
    url, factory = db
    r = runner.invoke(app, ["rlhf", "queue", "--database-url", url, "--k", "3", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "would queue 3 of 4" in r.output and "dry run: nothing written" in r.output
    assert "p3" in r.output and "model unsure of its answer (0.70)" in r.output
    assert _queue(factory) == []


def test_random_strategy_and_task_filter(db):
    url, _ = db
    args = ["rlhf", "queue", "--database-url", url, "--strategy", "random", "--seed", "1"]
    r = runner.invoke(app, [*args, "--k", "2", "--json", "--dry-run"])
    picked = [s["prediction_id"] for s in json.loads(r.stdout)["selected"]]
    r2 = runner.invoke(app, [*args, "--k", "2", "--json", "--dry-run"])
    assert picked == [s["prediction_id"] for s in json.loads(r2.stdout)["selected"]]
    assert len(set(picked)) == 2 and "p1" not in picked
    r = runner.invoke(app, [*args, "--task", "translate"])
    assert r.exit_code == 0 and "nothing to queue: 0 candidates" in r.output


def test_data_rows_with_a_reference_queue_the_drifted_input_first(tmp_path: Path, db):
    """No reward model, no confidence: the drift signal alone ranks the rows; the question
    about code is far from the geography reference."""
    url, factory = db
    reference = tmp_path / "reference.txt"
    reference.write_text(
        "\n".join(
            [
                "Which river flows through Vienna?",
                "What is the capital of Austria?",
                "Which river runs through Budapest?",
                "What is the largest city in Hungary?",
                "Which mountains lie south of Munich?",
                "What is the capital of Slovakia?",
            ]
        ),
        encoding="utf-8",
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps({"question": q, "context": "Some context."})
            for q in (
                "Which river flows through Prague?",
                "How do I reverse a linked list in Python with recursion?",
            )
        )
        + "\n",
        encoding="utf-8",
    )
    args = ["rlhf", "queue", "--database-url", url, "--data", str(rows), "--task", "qa"]
    r = runner.invoke(app, [*args, "--reference", str(reference), "--neighbours", "2", "--k", "1"])
    assert r.exit_code == 0, r.output
    queued = _queue(factory)
    assert len(queued) == 1 and queued[0]["prediction_id"] is None
    assert queued[0]["input"]["question"].startswith("How do I reverse")
    assert queued[0]["reason"].startswith("unlike the reference inputs")
    # without any signal that applies, "combined" says what to pass
    r = runner.invoke(app, [*args, "--k", "1"])
    assert r.exit_code == int(ExitStatus.USAGE)
    assert "error[rlhf.active]" in r.output and "--reference" in r.output


def test_usage_errors_exit_with_a_hint(tmp_path: Path, db):
    url, _ = db
    base = ["rlhf", "queue", "--database-url", url]
    r = runner.invoke(app, [*base, "--strategy", "uncertainty"])
    assert r.exit_code == int(ExitStatus.USAGE)
    assert "needs a reward model" in r.output and "hint" in r.output
    r = runner.invoke(app, [*base, "--weight", "loudness=2"])
    assert r.exit_code == int(ExitStatus.USAGE) and "unknown signal 'loudness'" in r.output
    r = runner.invoke(app, [*base, "--weight", "drift"])
    assert r.exit_code == int(ExitStatus.USAGE) and "NAME=W" in r.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task": "qa", "question": "q"}\nnot json\n', encoding="utf-8")
    r = runner.invoke(app, [*base, "--data", str(bad)])
    assert r.exit_code == int(ExitStatus.USAGE) and f"{bad}:2: not JSON" in r.output
    r = runner.invoke(app, [*base, "--strategy", "loudest"])
    assert r.exit_code == int(ExitStatus.USAGE) and "random" in r.output


def test_dry_run_on_a_fresh_database_does_not_create_the_schema(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    r = runner.invoke(app, ["rlhf", "queue", "--database-url", url, "--dry-run"])
    assert r.exit_code == int(ExitStatus.USAGE) and "no predictions yet" in r.output
    from taskloop.serve.storage.db import current_revision

    assert current_revision(url) is None


def _tiny_reward_model(folder: Path, seed: int) -> Path:
    """A 1-layer, width-32 BERT sequence classifier with one logit (random weights) over a
    word-level vocabulary: a real reward model, just an untrained one."""
    from taskloop.models.tiny import build_tiny_encoder

    words = "question number 0 1 2 3 4 vienna lies on the danube answer ? . context :"
    return build_tiny_encoder(folder, texts=[words], labels=1, seed=seed)


def test_reward_models_drive_uncertainty_and_disagreement(tmp_path: Path, db):
    """Two tiny reward models with no tuned threshold (so each is centred on the median of
    its rewards over the candidates): uncertainty = mean over models of H(σ(r_m - med_m)),
    disagreement = 2·std of σ(r_m - med_m); the CLI ranks by the uncertainty alone."""
    import math

    import numpy as np

    reward = pytest.importorskip("taskloop.rlhf.reward")
    url, factory = db
    a = _tiny_reward_model(tmp_path / "rm_a", seed=0)
    b = _tiny_reward_model(tmp_path / "rm_b", seed=1)
    args = ["rlhf", "queue", "--database-url", url, "--reward-model", str(a)]
    args += ["--reward-model", str(b), "--strategy", "uncertainty", "--k", "4", "--json"]
    r = runner.invoke(app, [*args, "--dry-run"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)["selected"]

    with factory() as s:
        stored = {p.id: p for p in repo.recent_predictions(s, 10) if p.id != "p1"}
    ids = sorted(stored)
    prompts = [repo.render_prompt("qa", stored[i].input) for i in ids]
    outputs = [stored[i].output or "" for i in ids]
    rewards = [reward.load_reward_model(m, device="cpu").score(prompts, outputs) for m in (a, b)]

    def entropy(p: float) -> float:
        return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))

    probs = [[1 / (1 + math.exp(-(x - float(np.median(rm))))) for x in rm] for rm in rewards]
    unc = {i: (entropy(probs[0][j]) + entropy(probs[1][j])) / 2 for j, i in enumerate(ids)}
    dis = {i: 2 * float(np.std([probs[0][j], probs[1][j]])) for j, i in enumerate(ids)}
    got = [s["prediction_id"] for s in out]
    assert sorted(got) == ids  # p1 was rated by a person: never a candidate
    assert [unc[i] for i in got] == sorted(unc.values(), reverse=True)
    for item in out:
        pid = item["prediction_id"]
        assert item["signals"]["uncertainty"] == pytest.approx(unc[pid], abs=1e-6)
        assert item["signals"]["disagreement"] == pytest.approx(dis[pid], abs=1e-6)
        assert item["priority"] == pytest.approx(unc[pid], abs=1e-6)
