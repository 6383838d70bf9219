"""``taskloop rlhf simulate`` end to end on a real SQLite store: dry run, real run with
--out and --json, the empty-store message, bad options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, upgrade
from taskloop.serve.storage.tables import FeedbackRow

runner = CliRunner()

SOURCE = "The invoice from Berlin was 4.5 euros for the printer."
GERMAN = "Die Rechnung aus Berlin betrug 4,5 Euro für den Drucker."
ROW = {"source": SOURCE, "source_lang": "en", "target_lang": "de"}
QA_ROW = {
    "question": "When?",
    "context": "The Normans conquered England in 1066.",
    "answers": ["1066"],
}


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with two translations of one input (good, a copy of the source), one QA
    answer, and a person's thumbs-up."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as s:
        for pid, task, row, output in (
            ("good", "translate", ROW, GERMAN),
            ("copy", "translate", ROW, SOURCE),
            ("answer", "qa", QA_ROW, "1066"),
        ):
            repo.add_prediction(
                s,
                PredictionRecord(
                    id=pid,
                    task=task,
                    input_hash=repo.hash_input(row),
                    input=row,
                    output=output,
                    status="ok",
                ),
            )
        repo.add_feedback(s, FeedbackIn(prediction_id="copy", kind="thumbs", thumbs="up"), "bob")
    engine.dispose()
    return url


def count(url: str, source: str | None = None) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            q = select(func.count()).select_from(FeedbackRow)
            if source is not None:
                q = q.where(FeedbackRow.source == source)
            return s.scalar(q) or 0
    finally:
        engine.dispose()


def test_dry_run_prints_the_table_and_writes_nothing(url: str) -> None:
    result = runner.invoke(app, ["rlhf", "simulate", "--database-url", url, "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "translate" in out and "qa" in out and "thumbs up" in out
    assert "would write 3 simulated rating(s) and 1 preference(s)" in out
    assert "dry run" in out
    assert count(url, "simulated") == 0 and count(url) == 1


def test_real_run_writes_ratings_out_file_and_json(url: str, tmp_path: Path) -> None:
    out_file = tmp_path / "ratings.jsonl"
    args = ["rlhf", "simulate", "--database-url", url, "--out", str(out_file), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rated"], summary["pairs"], summary["dry_run"]) == (3, 1, False)
    translate = next(t for t in summary["tasks"] if t["task"] == "translate")
    assert translate["rated"] == 2 and translate["pairs"] == 1
    assert translate["distribution"]["5"] == 1 and translate["thumbs_up_share"] == 0.5
    assert translate["applied"]["language"] == 2
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert [r["kind"] for r in rows] == ["score", "score", "score", "preference"]
    assert all(r["source"] == "simulated" and r["feedback_id"] for r in rows)
    assert rows[-1]["preferred"] == "a"  # "good" (A, older) over "copy"
    assert count(url, "simulated") == 4 and count(url, "human") == 1

    again = runner.invoke(app, ["rlhf", "simulate", "--database-url", url])
    assert again.exit_code == 0, again.output
    assert "nothing to rate: all 3 stored predictions" in again.stdout
    assert count(url, "simulated") == 4


def test_weights_and_task_filter(url: str) -> None:
    args = ["rlhf", "simulate", "--database-url", url, "--task", "qa", "--weight", "length=0"]
    result = runner.invoke(app, [*args, "--json", "--no-pairs"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [t["task"] for t in summary["tasks"]] == ["qa"]
    assert summary["rated"] == 1 and summary["pairs"] == 0


def test_empty_store_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(app, ["rlhf", "simulate", "--database-url", url])
    assert result.exit_code == 2
    assert "no stored predictions" in result.output
    assert "serve and ask some questions first" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weight", "vibes=2"], "--weight 'vibes=2'"),
        (["--weight", "tests"], "--weight 'tests'"),
        (["--weight", "tests=-1"], "--weight 'tests=-1'"),
        (["--task", "poetry"], "--task 'poetry' is not a task"),
    ],
)
def test_bad_options_are_usage_errors(url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["rlhf", "simulate", "--database-url", url, *args])
    assert result.exit_code == 2
    assert message in result.output
    assert count(url, "simulated") == 0
