"""``taskloop retrain check|run|gate`` through the real CLI app (typer's CliRunner), on a
real SQLite store and tiny registered models."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.models.registry import log_run, promote
from taskloop.monitor.retrain import aliases
from taskloop.monitor.triggers import load_state, state_path
from taskloop.monitor.triggers_cli import TRIGGER_EXIT
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, upgrade

runner = CliRunner()
PAIRS = [
    ("The model runs on a single GPU.", "Das Modell läuft auf einer einzigen GPU."),
    ("A dog is running across the green meadow.", "Ein Hund rennt über die grüne Wiese."),
    ("Children play in the park.", "Kinder spielen im Park."),
    ("The council voted seven to two.", "Der Rat stimmte sieben zu zwei."),
    ("A dog is running in the park.", "Ein Hund rennt im Park."),
    ("Twelve kilometres of cycling lanes.", "Zwölf Kilometer Radwege."),
]


pytestmark = pytest.mark.usefixtures("registry")


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.jsonl"
    rows = [{"id": f"p{i}", "source": s, "target": t} for i, (s, t) in enumerate(PAIRS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store with 4 translate predictions: 3 rated up, 1 rated down, one flagged."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    for i, (src, tgt) in enumerate(PAIRS[:4]):
        row = {"source": src}
        rec = PredictionRecord(
            id=uuid.uuid4().hex, task="translate", input_hash=repo.hash_input(row), input=row,
            output=tgt, status="flagged" if i == 3 else "ok",
        )  # fmt: skip
        with sessions() as s:
            repo.add_prediction(s, rec)
            fb = FeedbackIn(prediction_id=rec.id, kind="thumbs", thumbs="down" if i == 3 else "up")
            repo.add_feedback(s, fb, "rater")
    return url


def _register(name: str, folder: Path, alias: str | None = "challenger") -> int:
    record = log_run(
        experiment="tests", run_name=name, config={}, model_dir=folder, register_as=name,
        alias=alias,
    )  # fmt: skip
    assert record.version is not None
    return record.version


def test_check_prints_every_rule_and_fails_only_when_asked(db: str, tmp_path: Path):
    """4 ratings with 1 down = 25%. Rules: thumbs_down min_count 2, max_rate 0.2 -> fires;
    the defaults (min_count 20) -> quiet. --fail-on-trigger exits 1 only when one fires."""
    rules = tmp_path / "rules.yaml"
    rules.write_text("thumbs_down:\n  min_count: 2\n  max_rate: 0.2\n", "utf-8")
    base = ["retrain", "check", "--database-url", db, "--state", str(tmp_path / "s.json")]
    table = runner.invoke(app, [*base, "--rules", str(rules)])
    assert table.exit_code == 0, table.output
    for name in ("thumbs_down", "verification", "metric_decay", "drift", "volume"):
        assert name in table.output
    assert "retrain: yes (thumbs_down)" in table.output

    as_json = runner.invoke(app, [*base, "--rules", str(rules), "--json"])
    out = json.loads(as_json.stdout)
    assert out["retrain"] and out["fired"] == ["thumbs_down"]
    thumbs = next(t for t in out["triggers"] if t["name"] == "thumbs_down")
    assert thumbs["value"] == pytest.approx(0.25) and thumbs["threshold"] == 0.2
    assert out["stats"]["ratings"] == 4 and out["stats"]["flagged_or_failed"] == 1

    failing = runner.invoke(app, [*base, "--rules", str(rules), "--fail-on-trigger"])
    assert failing.exit_code == TRIGGER_EXIT == 1
    calm = runner.invoke(app, [*base, "--fail-on-trigger"])
    assert calm.exit_code == 0, calm.output
    assert "retrain: no" in calm.output


def test_check_reports_a_bad_rules_file_without_a_traceback(db: str, tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("volume:\n  min_neww: 3\n", "utf-8")
    result = runner.invoke(app, ["retrain", "check", "--database-url", db, "--rules", str(rules)])
    assert result.exit_code == 2
    assert "error[rlhf.retrain]" in result.output and "volume.min_neww" in result.output
    assert "Traceback" not in result.output


def test_check_with_probe_records_the_champion_metric(db, tiny, probe, tmp_path):
    name = "cli-probe"
    one = _register(name, tiny[1])
    promote(name, one)
    state = tmp_path / "state.json"
    args = ["retrain", "check", "--database-url", db, "--state", str(state), "--name", name]
    result = runner.invoke(app, [*args, "--task", "translate", "--probe", str(probe), "--json"])
    assert result.exit_code == 0, result.output
    saved = load_state(state)
    assert len(saved.history) == 1 and saved.history[0].version == one
    assert saved.metric == "bleu"
    assert json.loads(result.stdout)["stats"]["probe_metric"] == saved.history[0].value
    no_task = runner.invoke(app, [*args, "--probe", str(probe)])
    assert no_task.exit_code == 2 and "--task" in no_task.output


def test_gate_command_keeps_an_indistinguishable_challenger(tiny, probe, tmp_path):
    name = "cli-gate"
    one = _register(name, tiny[1])
    promote(name, one)
    two = _register(name, tiny[2])
    out = tmp_path / "gate"
    args = ["retrain", "gate", name, "--task", "translate", "--probe", str(probe)]
    result = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["decision"] == "kept" and verdict["challenger_version"] == two
    assert aliases(name) == {"champion": one, "challenger": two}
    assert (out / "gate.json").is_file()
    state = load_state(state_path(name))
    assert state.baseline == verdict["champion_value"] and state.last_decision == "kept"
    table = runner.invoke(app, [*args, "--out", str(tmp_path / "g2")])
    assert table.exit_code == 0 and "kept:" in table.output and "bleu" in table.output
    missing = runner.invoke(app, ["retrain", "gate", "cli-none", "--task", "translate",
                                  "--probe", str(probe)])  # fmt: skip
    assert missing.exit_code == 2 and "challenger" in missing.output


def test_run_command_retrains_only_when_a_rule_fires_or_forced(db, tiny, probe, tmp_path):
    name = "cli-run"
    one = _register(name, tiny[1], alias=None)
    promote(name, one)
    args = [
        "retrain", "run", name, "--task", "translate", "--probe", str(probe),
        "--database-url", db, "--state", str(tmp_path / "state.json"),
        "--set", "run.max_steps=2", "--set", "data.clean.enabled=false", "--device", "cpu",
    ]  # fmt: skip
    idle = runner.invoke(app, [*args, "--out", str(tmp_path / "r0")])
    assert idle.exit_code == 0, idle.output
    assert "nothing retrained" in idle.output and aliases(name) == {"champion": one}

    forced = runner.invoke(app, [*args, "--force", "--out", str(tmp_path / "r1"), "--json"])
    assert forced.exit_code == 0, forced.output
    out = json.loads(forced.stdout)
    assert out["ran"] and out["forced"] and out["fired"] == []
    assert out["job"]["rows"] == 3 and out["job"]["version"] == one + 1
    assert out["gate"]["challenger_version"] == one + 1
    assert out["gate"]["decision"] in ("kept", "promoted")
    assert aliases(name)["challenger"] == one + 1
    assert (tmp_path / "r1" / "gate" / "gate.json").is_file()
    unknown = runner.invoke(app, [*args, "--force", "--job", "nope"])
    assert unknown.exit_code == 2 and "unknown retraining job" in unknown.output
