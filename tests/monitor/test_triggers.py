"""Retraining triggers: each rule fires on a scripted series and stays quiet below its
limit (minimum counts included); rules files; the retraining state; collect_stats on a
real SQLite store with crafted predictions and ratings."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from taskloop.monitor.triggers import (
    DriftRule,
    LoopStats,
    MetricDecayRule,
    MetricSeriesRule,
    RetrainState,
    StatsOptions,
    ThumbsDownRule,
    TriggerRules,
    VerificationRule,
    VolumeRule,
    collect_stats,
    consecutive_drops,
    drift_rule,
    fired,
    load_rules,
    load_state,
    metric_decay_rule,
    metric_series_rules,
    record_probe,
    retraining_triggers,
    save_state,
    state_path,
    thumbs_down_rule,
    verification_rule,
    volume_rule,
)
from taskloop.rlhf.errors import RetrainError
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, upgrade
from taskloop.serve.storage.tables import FeedbackRow, PredictionRow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "retraining.md"


# ----------------------------------------------------------------------- the rules


def test_thumbs_down_fires_above_its_rate_and_not_at_it_or_below_min_count():
    """20 ratings, limit 30%: 7 down = 35% fires, 6 down = 30% (not above) does not;
    19 ratings all down stay quiet under min_count 20."""
    rule = ThumbsDownRule(window=20, min_count=20, max_rate=0.3)
    seven = LoopStats(thumbs_down=(True,) * 7 + (False,) * 13)
    six = LoopStats(thumbs_down=(True,) * 6 + (False,) * 14)
    r = thumbs_down_rule(seven, rule)
    assert r.fired and r.value == pytest.approx(0.35) and r.threshold == 0.3
    assert "7 of the newest 20" in r.detail
    assert not thumbs_down_rule(six, rule).fired
    few = thumbs_down_rule(LoopStats(thumbs_down=(True,) * 19), rule)
    assert not few.fired and "needs at least 20" in few.detail


def test_thumbs_down_looks_at_the_newest_window_only():
    """Newest first: 20 good ratings then 30 old downs; a window of 20 sees no down, a
    window of 50 sees 30/50 = 60%."""
    stats = LoopStats(thumbs_down=(False,) * 20 + (True,) * 30)
    assert not thumbs_down_rule(stats, ThumbsDownRule(window=20, min_count=5)).fired
    wide = thumbs_down_rule(stats, ThumbsDownRule(window=50, min_count=5))
    assert wide.fired and wide.value == pytest.approx(0.6)


def test_verification_failure_rate_counts_flagged_and_failed():
    """50 predictions, limit 20%: 6 flagged + 5 failed = 22% fires; 10 = 20% does not;
    49 (below min_count 50) all failing stays quiet."""
    rule = VerificationRule(window=50, min_count=50, max_rate=0.2)
    bad = LoopStats(statuses=("flagged",) * 6 + ("failed",) * 5 + ("ok",) * 39)
    assert verification_rule(bad, rule).fired
    assert verification_rule(bad, rule).value == pytest.approx(11 / 50)
    at_limit = LoopStats(statuses=("flagged",) * 10 + ("ok",) * 40)
    assert not verification_rule(at_limit, rule).fired
    assert not verification_rule(LoopStats(statuses=("failed",) * 49), rule).fired


def test_metric_decay_fires_when_the_drop_exceeds_max_drop():
    """Baseline 30: 27.5 is a 2.5-point drop (> 2, fires), 28.0 exactly 2 (does not)."""
    rule = MetricDecayRule(max_drop=2.0)
    r = metric_decay_rule(LoopStats(probe_metric=27.5, baseline_metric=30.0, metric="bleu"), rule)
    assert r.fired and r.value == pytest.approx(2.5) and "bleu" in r.detail
    assert not metric_decay_rule(LoopStats(probe_metric=28.0, baseline_metric=30.0), rule).fired
    assert not metric_decay_rule(LoopStats(probe_metric=35.0, baseline_metric=30.0), rule).fired
    missing = metric_decay_rule(LoopStats(probe_metric=20.0), rule)
    assert not missing.fired and "no baseline" in missing.detail


@pytest.mark.parametrize(
    ("series", "min_step", "expected"),
    [
        ([50, 48, 49, 47, 46, 44], 0.0, 3),  # 49 -> 47 -> 46 -> 44
        ([50, 49, 48, 48.5], 0.0, 0),  # the newest went up
        ([50, 49, 48], 0.0, 2),
        ([50, 49.9, 49.8, 49.7], 0.5, 0),  # drops of 0.1 are under min_step
        ([50, 49, 49], 0.0, 0),  # equal is not a drop
        ([], 0.0, 0),
        ([42], 0.0, 0),
    ],
)
def test_consecutive_drops_counts_the_run_at_the_end(series, min_step, expected):
    assert consecutive_drops(series, min_step) == expected


def test_metric_series_fires_on_a_scripted_decay_and_on_the_floor():
    """A probe series that falls three times in a row fires the drops rule (k=3); two
    drops do not; the newest value under the floor fires the floor rule."""
    rule = MetricSeriesRule(consecutive_drops=3, floor=40.0)
    falling = LoopStats(metric_series=(50.0, 48.0, 49.0, 47.0, 46.0, 44.0))
    drops, floor = metric_series_rules(falling, rule)
    assert (drops.name, drops.fired, drops.value, drops.threshold) == (
        "metric_series.drops", True, 3.0, 3.0,
    )  # fmt: skip
    assert floor.name == "metric_series.floor" and not floor.fired and floor.value == 44.0
    two = metric_series_rules(LoopStats(metric_series=(50.0, 49.0, 48.0)), rule)
    assert not two[0].fired and two[0].value == 2.0
    low = metric_series_rules(LoopStats(metric_series=(45.0, 46.0, 39.5)), rule)
    assert not low[0].fired and low[1].fired and low[1].value == 39.5
    only_drops = metric_series_rules(falling, MetricSeriesRule(consecutive_drops=3))
    assert [r.name for r in only_drops] == ["metric_series.drops"]


def test_drift_rule_fires_below_alpha_with_enough_inputs():
    rule = DriftRule(alpha=0.05, min_inputs=20)
    assert drift_rule(LoopStats(drift_p=0.01, drift_inputs=50, drift_tests=5), rule).fired
    assert not drift_rule(LoopStats(drift_p=0.05, drift_inputs=50), rule).fired
    assert not drift_rule(LoopStats(drift_p=0.2, drift_inputs=50), rule).fired
    few = drift_rule(LoopStats(drift_p=0.001, drift_inputs=19), rule)
    assert not few.fired and "19 recent inputs" in few.detail
    assert "not measured" in drift_rule(LoopStats(), rule).detail


def test_volume_counts_human_ratings_and_simulated_only_when_asked():
    rule = VolumeRule(min_new=1000)
    assert not volume_rule(LoopStats(new_human=999, new_simulated=5000), rule).fired
    assert volume_rule(LoopStats(new_human=1000), rule).fired
    both = VolumeRule(min_new=1000, include_simulated=True)
    r = volume_rule(LoopStats(new_human=400, new_simulated=600), both)
    assert r.fired and r.value == 1000.0


def test_retraining_triggers_runs_the_enabled_rules_in_order():
    """Defaults on empty stats: every rule reports, none fires. Disabled rules are
    left out; a scripted series fires exactly the rules it should."""
    quiet = retraining_triggers(LoopStats())
    assert [r.name for r in quiet] == [
        "thumbs_down", "verification", "metric_decay", "metric_series.drops", "drift", "volume",
    ]  # fmt: skip
    assert fired(quiet) == []
    rules = TriggerRules.model_validate(
        {"thumbs_down": {"enabled": False}, "volume": {"min_new": 3}, "drift": {"enabled": False}}
    )
    stats = LoopStats(
        thumbs_down=(True,) * 100,
        metric_series=(40.0, 39.0, 38.0, 37.0),
        new_human=3,
    )
    results = retraining_triggers(stats, rules)
    assert "thumbs_down" not in [r.name for r in results]
    assert fired(results) == ["metric_series.drops", "volume"]


# ----------------------------------------------------------------------- rules files


def test_rules_file_sets_values_and_refuses_unknown_keys(tmp_path: Path):
    good = tmp_path / "rules.yaml"
    good.write_text("thumbs_down:\n  max_rate: 0.5\nvolume:\n  enabled: false\n", "utf-8")
    rules = load_rules(good)
    assert rules.thumbs_down.max_rate == 0.5 and rules.thumbs_down.window == 200
    assert not rules.volume.enabled and rules.verification.enabled
    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps({"drift": {"alpha": 0.01}}), "utf-8")
    assert load_rules(as_json).drift.alpha == 0.01
    bad = tmp_path / "bad.yaml"
    bad.write_text("thumbs_down:\n  max_rte: 0.5\n", "utf-8")
    with pytest.raises(RetrainError) as err:
        load_rules(bad)
    assert str(bad) in err.value.message and "thumbs_down.max_rte" in err.value.message
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("verification:\n  max_rate: 2\n", "utf-8")
    with pytest.raises(RetrainError, match=r"verification\.max_rate"):
        load_rules(wrong)
    assert load_rules(None) == TriggerRules()


def test_the_rules_example_in_the_docs_parses_and_shows_the_defaults():
    """docs/retraining.md's rules file is parsed, and it states every default."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# rules\.yaml.*?)```", text, re.S)
    assert block is not None, "docs/retraining.md lost its rules.yaml example"
    import yaml

    assert TriggerRules.model_validate(yaml.safe_load(block.group(1))) == TriggerRules()


# ----------------------------------------------------------------------- state


def test_state_round_trip_and_probe_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TASKLOOP_HOME", str(tmp_path / "home"))
    assert state_path("team/translate") == tmp_path / "home" / "retrain" / "team_translate.json"
    path = tmp_path / "state.json"
    assert load_state(path) == RetrainState()
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    save_state(RetrainState(name="m", last_run=when, baseline=31.5, metric="bleu"), path)
    record_probe(path, 30.0, metric="bleu", version=3, when=when + timedelta(days=1))
    state = record_probe(path, 28.0, metric="bleu", version=3)
    again = load_state(path)
    assert again == state and again.last_run == when and again.baseline == 31.5
    assert [p.value for p in again.history] == [30.0, 28.0]
    path.write_text("{not json", "utf-8")
    with pytest.raises(RetrainError, match=r"state\.json"):
        load_state(path)


# ----------------------------------------------------------------------- collect_stats


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    return session_factory(make_engine(url))


def _predict(
    sessions: sessionmaker[Session], task: str, row: dict, status: str = "ok", output="out"
) -> str:
    rec = PredictionRecord(
        id=uuid.uuid4().hex, task=task, input_hash=repo.hash_input(row), input=row,
        output=output, status=status,
    )  # fmt: skip
    with sessions() as s:
        repo.add_prediction(s, rec)
    return rec.id


def _rate(sessions: sessionmaker[Session], pid: str, **fields) -> None:
    with sessions() as s:
        repo.add_feedback(s, FeedbackIn(prediction_id=pid, **fields), "rater")


def _age(sessions: sessionmaker[Session], when: datetime) -> None:
    """Move every stored prediction and rating to ``when`` (before a retraining)."""
    with sessions() as s:
        s.execute(update(PredictionRow).values(created=when))
        s.execute(update(FeedbackRow).values(created=when))
        s.commit()


def test_collect_stats_reads_ratings_statuses_and_new_feedback(sessions):
    """Crafted store: translate predictions 5 ok, 3 flagged, 1 failed, 1 skipped; one qa.
    Human thumbs on translate: up, down, up, down, up (newest last); 4 simulated downs;
    a human score and a comment. Expected with task=translate:
    thumbs (newest first) = (F, T, F, T, F); statuses = 9 (skipped left out), 4 failing;
    new ratings: human 5 thumbs + 1 score = 6 (the comment is no rating), simulated 4."""
    ids = [_predict(sessions, "translate", {"source": f"s{i}"}) for i in range(5)]
    ids += [_predict(sessions, "translate", {"source": f"f{i}"}, "flagged") for i in range(3)]
    ids.append(_predict(sessions, "translate", {"source": "x"}, "failed", None))
    _predict(sessions, "translate", {"source": "y"}, "skipped", None)
    qa = _predict(sessions, "qa", {"question": "q", "context": "c"}, "flagged")
    for pid, thumb in zip(ids, ["up", "down", "up", "down", "up"], strict=False):
        _rate(sessions, pid, kind="thumbs", thumbs=thumb)
    for pid in ids[5:9]:
        _rate(sessions, pid, kind="thumbs", thumbs="down", source="simulated")
    _rate(sessions, ids[0], kind="score", score=5)
    _rate(sessions, ids[0], kind="comment", comment="fine")
    _rate(sessions, qa, kind="thumbs", thumbs="down")

    stats = collect_stats(sessions, task="translate")
    assert stats.thumbs_down == (False, True, False, True, False)
    assert len(stats.statuses) == 9 and "skipped" not in stats.statuses
    assert sum(s in ("flagged", "failed") for s in stats.statuses) == 4
    assert (stats.new_human, stats.new_simulated) == (6, 4)
    assert stats.since is None and stats.drift_p is None

    every = collect_stats(sessions)  # all tasks: the qa prediction and its rating count
    assert len(every.thumbs_down) == 6 and every.thumbs_down[0] is True
    assert len(every.statuses) == 10 and every.new_human == 7
    narrow = collect_stats(sessions, window=2, task="translate")
    assert narrow.thumbs_down == (False, True) and len(narrow.statuses) == 2


def test_collect_stats_counts_only_what_came_after_the_last_retraining(sessions):
    """Rows moved to 2020, a retraining recorded in 2021: only the newer rows count."""
    old = _predict(sessions, "translate", {"source": "old"}, "flagged")
    _rate(sessions, old, kind="thumbs", thumbs="down")
    _age(sessions, datetime(2020, 1, 1, tzinfo=UTC))
    new = _predict(sessions, "translate", {"source": "new"})
    _rate(sessions, new, kind="thumbs", thumbs="up")
    state = RetrainState(
        last_run=datetime(2021, 1, 1, tzinfo=UTC),
        baseline=30.0,
        metric="bleu",
        history=[
            {"time": datetime(2021, 1, 1, tzinfo=UTC), "value": 30.0},
            {"time": datetime(2021, 2, 1, tzinfo=UTC), "value": 26.0},
        ],
    )
    stats = collect_stats(sessions, state=state)
    assert stats.thumbs_down == (False,) and stats.statuses == ("ok",)
    assert stats.new_human == 1 and stats.since == datetime(2021, 1, 1, tzinfo=UTC)
    assert (stats.probe_metric, stats.baseline_metric) == (26.0, 30.0)
    assert stats.metric_series == (30.0, 26.0)
    decay = metric_decay_rule(stats, MetricDecayRule(max_drop=2.0))
    assert decay.fired and decay.value == pytest.approx(4.0)
    everything = collect_stats(sessions, state=state, since=datetime(2019, 1, 1, tzinfo=UTC))
    assert everything.thumbs_down == (False, True)


def test_collect_stats_measures_drift_of_recent_inputs(sessions):
    """Reference: 30 short English questions. Recent inputs: 30 long German sentences.
    The KS tests on length and ASCII-letter share separate them: p far below 0.01."""
    reference = [f"What is item number {i}?" for i in range(30)]
    for i in range(30):
        text = "Größere Überschwemmungen bedrohen die Städte am Fluss " * (3 + i % 4) + str(i)
        _predict(sessions, "qa", {"question": text, "context": "c"})
    stats = collect_stats(sessions, drift=StatsOptions(reference=reference, drift_inputs=25))
    assert stats.drift_inputs == 25 and stats.drift_tests == 4
    assert stats.drift_p is not None and stats.drift_p < 0.01
    assert drift_rule(stats, DriftRule(alpha=0.05)).fired


def test_retraining_triggers_is_reachable_under_its_legacy_name() -> None:
    import taskloop
    from taskloop.monitor.triggers import retraining_triggers

    assert taskloop.retraining_triggers is retraining_triggers
