"""The retraining job and the champion/challenger gate.

The decision logic on plain per-item scores (hand-computed bootstrap outcomes), the new
training rows read from a real SQLite store, and end to end on tiny registered models:
the gate keeps an indistinguishable challenger and promotes one that is clearly better
on the probe, the sft job registers a challenger whose weights moved, and a round of
``run_retraining`` goes from triggers to the recorded state.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy.orm import Session, sessionmaker

from taskloop.models.registry import log_run, promote, rollback, show
from taskloop.monitor.retrain import (
    GATE_TAG,
    JobContext,
    SftOptions,
    aliases,
    decide,
    gate,
    gate_scores,
    measure_probe,
    positive_rows,
    run_job,
    run_retraining,
    to_task_row,
    version_folder,
)
from taskloop.monitor.triggers import TriggerRules, load_state
from taskloop.rlhf.errors import RetrainError
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, upgrade

PAIRS = [
    ("The model runs on a single GPU.", "Das Modell läuft auf einer einzigen GPU."),
    ("A dog is running across the green meadow.", "Ein Hund rennt über die grüne Wiese."),
    ("Children play in the park.", "Kinder spielen im Park."),
    ("The council voted seven to two.", "Der Rat stimmte sieben zu zwei."),
    ("The model answers questions about short documents.", "Das Modell beantwortet Fragen."),
    ("A dog is running in the park.", "Ein Hund rennt im Park."),
    ("The children play while the dog runs.", "Die Kinder spielen, während der Hund rennt."),
    ("Twelve kilometres of cycling lanes.", "Zwölf Kilometer Radwege."),
]


pytestmark = pytest.mark.usefixtures("registry")


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.jsonl"
    rows = [
        {"id": f"p{i}", "task": "translate", "source": s, "target": t}
        for i, (s, t) in enumerate(PAIRS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    return session_factory(make_engine(url))


def _register(name: str, folder: Path, alias: str | None = "challenger") -> int:
    record = log_run(
        experiment="tests", run_name=name, config={"folder": folder.name}, model_dir=folder,
        register_as=name, alias=alias,
    )  # fmt: skip
    assert record.version is not None
    return record.version


def _predict(sessions, task: str, row: dict, output: str | None) -> str:
    rec = PredictionRecord(
        id=uuid.uuid4().hex, task=task, input_hash=repo.hash_input(row), input=row,
        output=output, status="ok",
    )  # fmt: skip
    with sessions() as s:
        repo.add_prediction(s, rec)
    return rec.id


def _rate(sessions, pid: str, **fields) -> None:
    with sessions() as s:
        repo.add_feedback(s, FeedbackIn(prediction_id=pid, **fields), "rater")


# ------------------------------------------------------------------ the decision, core


def test_decide_promotes_only_a_significant_positive_gain():
    assert decide(2.0, 0.01)[0] == "promoted"
    assert decide(2.0, 0.05)[0] == "kept"  # p must be below alpha, not equal
    assert "not significantly" in decide(2.0, 0.2)[1]
    assert decide(0.0, 0.0)[0] == "kept" and "equal" in decide(0.0, 0.0)[1]
    assert decide(-3.0, 0.0)[0] == "kept"
    assert decide(0.5, 0.001, min_delta=1.0)[0] == "kept"
    assert "less than the minimum 1" in decide(0.5, 0.001, min_delta=1.0)[1]
    # lower is better (TER): a negative delta is the gain
    assert decide(-2.0, 0.01, higher_is_better=False)[0] == "promoted"
    assert decide(2.0, 0.01, higher_is_better=False)[0] == "kept"


def test_gate_scores_keeps_a_worse_and_an_equal_challenger():
    """Every item 10 points worse: delta -10 in every resample, p = 1 -> kept.
    Identical scores: delta 0 in every resample (a tie is "not better"), p = 1 -> kept."""
    champion = [50.0, 70.0, 30.0, 60.0, 40.0, 80.0, 20.0, 55.0]
    worse = gate_scores(champion, [v - 10 for v in champion], metric="bleu")
    assert worse.decision == "kept" and worse.delta == pytest.approx(-10.0)
    assert worse.p_value == 1.0 and worse.high == pytest.approx(-10.0)
    equal = gate_scores(champion, list(champion))
    assert equal.decision == "kept" and equal.delta == 0.0 and equal.p_value == 1.0


def test_gate_scores_promotes_a_clearly_better_challenger():
    """Every item 10 points better: every resample's delta is +10, p = 0 -> promoted."""
    champion = [50.0, 70.0, 30.0, 60.0, 40.0, 80.0, 20.0, 55.0]
    better = gate_scores(champion, [v + 10 for v in champion], metric="bleu", alpha=0.05)
    assert better.decision == "promoted" and better.promoted
    assert (better.champion_value, better.challenger_value) == (50.625, 60.625)
    assert better.p_value == 0.0 and better.low == pytest.approx(10.0)
    assert better.n == 8 and better.resamples == 1000


def test_gate_scores_keeps_a_gain_that_rests_on_one_item():
    """Ten items, the challenger 1 point better on one only: a resample shows no gain
    exactly when it misses that item, with probability 0.9**10 = 0.349 -> p ~ 0.35,
    not significant at 0.05."""
    champion = [0.0, 100.0] * 5
    challenger = [1.0, *champion[1:]]
    result = gate_scores(champion, challenger, resamples=4000)
    assert result.decision == "kept" and "not significantly" in result.reason
    assert 0.30 < (result.p_value or 0) < 0.40
    assert result.delta == pytest.approx(0.1)


def test_gate_scores_refuses_unpaired_or_bad_input():
    with pytest.raises(RetrainError, match="same >= 2 items"):
        gate_scores([1.0, 2.0], [1.0])
    with pytest.raises(RetrainError, match="alpha"):
        gate_scores([1.0, 2.0], [1.0, 2.0], alpha=1.5)


# ------------------------------------------------------------------ new training data


def test_to_task_row_puts_the_output_where_each_task_keeps_its_label():
    assert to_task_row("translate", {"source": "a", "target": "old", "id": "x"}, "b", "p1") == {
        "id": "p1", "task": "translate", "source": "a", "target": "b",
    }  # fmt: skip
    assert to_task_row("summarize", {"document": "d", "summary": "s"}, "o", "p2") == {
        "id": "p2", "task": "summarize", "document": "d", "summaries": ["o"],
    }  # fmt: skip
    qa = to_task_row("qa", {"question": "q", "context": "c", "is_impossible": True}, "a", "p3")
    assert qa == {"id": "p3", "task": "qa", "question": "q", "context": "c", "answers": ["a"]}
    code = to_task_row("codegen", {"prompt": "def f():", "entry_point": "f"}, "  pass", "p4")
    assert code["completion"] == "  pass" and code["entry_point"] == "f"


def test_positive_rows_take_well_rated_outputs_of_the_task_only(sessions):
    """up -> row; score 4 -> row; score 3 -> no; up then down -> left out (raters
    disagree); simulated up -> only with include_simulated; another task or an empty
    output -> no."""
    up = _predict(sessions, "translate", {"source": "A dog."}, "Ein Hund.")
    four = _predict(sessions, "translate", {"source": "A cat."}, "Eine Katze.")
    three = _predict(sessions, "translate", {"source": "A cow."}, "Eine Kuh.")
    split = _predict(sessions, "translate", {"source": "A bird."}, "Ein Vogel.")
    sim = _predict(sessions, "translate", {"source": "A fish."}, "Ein Fisch.")
    qa = _predict(sessions, "qa", {"question": "q", "context": "c"}, "c")
    empty = _predict(sessions, "translate", {"source": "Nothing."}, "  ")
    _rate(sessions, up, kind="thumbs", thumbs="up")
    _rate(sessions, up, kind="thumbs", thumbs="up")  # twice: still one row
    _rate(sessions, four, kind="score", score=4)
    _rate(sessions, three, kind="score", score=3)
    _rate(sessions, split, kind="thumbs", thumbs="up")
    _rate(sessions, split, kind="thumbs", thumbs="down")
    _rate(sessions, sim, kind="thumbs", thumbs="up", source="simulated")
    _rate(sessions, qa, kind="thumbs", thumbs="up")
    _rate(sessions, empty, kind="thumbs", thumbs="up")

    rows, invalid = positive_rows(sessions, task="translate")
    assert invalid == 0
    assert [(r["id"], r["target"]) for r in rows] == [(up, "Ein Hund."), (four, "Eine Katze.")]
    with_sim, _ = positive_rows(sessions, task="translate", include_simulated=True)
    assert [r["id"] for r in with_sim] == [up, four, sim]
    strict, _ = positive_rows(sessions, task="translate", min_score=5)
    assert [r["id"] for r in strict] == [up]


def test_sft_options_refuse_unknown_keys():
    assert SftOptions.from_mapping({"overrides": ["run.max_steps=2"]}).overrides == (
        "run.max_steps=2",
    )
    with pytest.raises(RetrainError, match="max_step"):
        SftOptions.from_mapping({"max_step": 2})


# ------------------------------------------------------------------ end to end, tiny models


def test_measure_probe_scores_a_model_with_the_primary_metric(tiny, probe):
    score = measure_probe(tiny[1], task="translate", probe=probe)
    assert score.metric == "bleu" and score.n == len(PAIRS) and 0.0 <= score.value <= 100.0
    with pytest.raises(RetrainError, match="no such file"):
        measure_probe(tiny[1], task="translate", probe=probe.parent / "missing.jsonl")


def test_gate_keeps_a_challenger_that_is_not_significantly_better(tiny, probe, tmp_path):
    """Two random tiny models answer noise: no significant difference, so v2 stays
    challenger, v1 stays champion; the verdict is in gate.json and on v2's tag."""
    name = "gate-keep"
    one = _register(name, tiny[1])
    promote(name, one)
    two = _register(name, tiny[2])
    result = gate(name, task="translate", probe=probe, out=tmp_path / "gate")
    assert result.decision == "kept" and not result.promoted
    assert (result.champion_version, result.challenger_version) == (one, two)
    assert result.metric == "bleu" and result.n == len(PAIRS)
    assert result.p_value is not None and (result.p_value >= 0.05 or (result.delta or 0) <= 0)
    assert aliases(name) == {"champion": one, "challenger": two}
    written = json.loads((tmp_path / "gate" / "gate.json").read_text("utf-8"))
    assert written["decision"] == "kept" and written["reason"] == result.reason
    assert (tmp_path / "gate" / "evaluation" / "report.json").is_file()
    tag = json.loads(next(v for v in show(name).versions if v.version == two).tags[GATE_TAG])
    assert tag["decision"] == "kept" and tag["champion_version"] == one


def test_gate_promotes_a_challenger_that_matches_the_probe_and_rollback_undoes_it(
    tiny, probe, tmp_path
):
    """References made from v2's own greedy answers: v2 scores BLEU 100 on every item,
    v1 (other weights) far less; every resample favours v2 -> p = 0 -> promoted. Then
    `rollback` puts v1 back."""
    from taskloop.evaluate.items import run_model
    from taskloop.monitor.retrain import probe_input

    name = "gate-promote"
    one = _register(name, tiny[1])
    promote(name, one)
    two = _register(name, tiny[2])
    with probe_input(probe, "translate") as folder:
        answers = run_model(folder, {"translate": str(version_folder(name, two))}).items
    rows = [
        {"id": it.id, "task": "translate", "source": it.source, "target": it.prediction}
        for it in answers
        if it.prediction.strip()
    ]
    assert len(rows) >= 6
    matched = tmp_path / "matched.jsonl"
    matched.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = gate(name, task="translate", probe=matched, out=tmp_path / "gate")
    assert result.decision == "promoted", result.reason
    assert result.challenger_value == pytest.approx(100.0)
    assert (result.champion_value or 0) < 100.0 and result.p_value == 0.0
    assert aliases(name)["champion"] == two
    assert rollback(name).version == one and aliases(name)["champion"] == one


def test_gate_without_champion_promotes_the_first_challenger(tiny, probe, tmp_path):
    name = "gate-first"
    one = _register(name, tiny[1])
    result = gate(name, task="translate", probe=probe, out=tmp_path / "g")
    assert result.decision == "promoted" and "no champion" in result.reason
    assert result.champion_version is None and result.challenger_value is not None
    assert aliases(name)["champion"] == one
    again = gate(name, task="translate", probe=probe, out=tmp_path / "g2")
    assert again.decision == "kept" and "champion already" in again.reason
    tag = json.loads(next(v for v in show(name).versions if v.version == one).tags[GATE_TAG])
    assert tag["decision"] == "promoted", "the no-op gate must not overwrite the verdict"


def test_gate_needs_a_challenger(tiny, probe):
    with pytest.raises(RetrainError, match="no 'challenger'"):
        gate("gate-nothing", task="translate", probe=probe)


@pytest.fixture
def rated(sessions) -> Iterator[sessionmaker[Session]]:
    """A store with the probe's first three translations rated thumbs up (and one
    thumbs down that must not become training data)."""
    for src, tgt in PAIRS[:3]:
        pid = _predict(sessions, "translate", {"source": src, "target_lang": "de"}, tgt)
        _rate(sessions, pid, kind="thumbs", thumbs="up")
    bad = _predict(sessions, "translate", {"source": PAIRS[3][0]}, "Unsinn")
    _rate(sessions, bad, kind="thumbs", thumbs="down")
    yield sessions


SHORT = {"overrides": ["run.max_steps=3", "data.clean.enabled=false"], "device": "cpu"}


def test_sft_job_trains_on_rated_outputs_and_registers_a_challenger(tiny, rated, tmp_path):
    name = "sft-job"
    one = _register(name, tiny[1])
    promote(name, one)
    ctx = JobContext(
        name=name, task="translate", champion=version_folder(name, one), out=tmp_path / "job",
        sessions=rated, champion_version=one, options=SHORT,
    )  # fmt: skip
    result = run_job(ctx)
    assert result.job == "sft" and result.rows == 3 and result.version == one + 1
    assert aliases(name) == {"champion": one, "challenger": result.version}
    written = (tmp_path / "job" / "data" / "feedback-translate.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in written.splitlines()]
    assert [r["target"] for r in rows] == [t for _, t in PAIRS[:3]]
    assert all(r["task"] == "translate" and r["target_lang"] == "de" for r in rows)
    before = load_file(str(tiny[1] / "model.safetensors"))
    after = load_file(str(version_folder(name, result.version) / "model.safetensors"))
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) >= len(before) // 2, "training changed too few tensors"
    version = next(v for v in show(name).versions if v.version == result.version)
    assert version.tags["taskloop.retrain.job"] == "sft"
    assert version.tags["taskloop.retrain.parent"] == str(one)
    assert version.tags["taskloop.retrain.rows"] == "3"
    assert version.metrics["steps"] == 3.0 and version.metrics["train_rows"] == 3.0


def test_sft_job_without_any_data_says_so(tiny, sessions, tmp_path):
    ctx = JobContext(
        name="sft-empty", task="translate", champion=tiny[1], out=tmp_path / "job",
        sessions=sessions,
    )  # fmt: skip
    with pytest.raises(RetrainError, match="no translate predictions rated"):
        run_job(ctx)
    with pytest.raises(RetrainError, match="unknown retraining job"):
        run_job(ctx, "rlhf-not-yet")


RLHF_SHORT = {
    "steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 4,
    "device": "cpu", "verifiable": {"format": 1.0},
}  # fmt: skip


def test_rlhf_job_trains_a_reward_model_then_ppo_and_registers_a_challenger(tiny, rated, tmp_path):
    """No reward model given: one is trained on the store's ratings (the packaged MiniLM
    backbone), PPO runs from the champion on the stored inputs, and the policy becomes
    the challenger with the job's metrics and tags."""
    name = "rlhf-job"
    one = _register(name, tiny[1])
    promote(name, one)
    ctx = JobContext(
        name=name, task="translate", champion=version_folder(name, one), out=tmp_path / "job",
        sessions=rated, champion_version=one, options=RLHF_SHORT,
    )  # fmt: skip
    result = run_job(ctx, "rlhf")
    assert result.job == "rlhf" and result.version == one + 1
    assert result.rows == 4  # the four stored inputs are the prompts
    assert aliases(name) == {"champion": one, "challenger": result.version}
    assert (tmp_path / "job" / "reward" / "model" / "config.json").is_file()
    assert (tmp_path / "job" / "ppo" / "steps.jsonl").read_text("utf-8").count("\n") == 2
    assert any("reward model trained on" in note for note in result.notes)
    version = next(v for v in show(name).versions if v.version == result.version)
    assert version.tags["taskloop.retrain.job"] == "rlhf"
    assert "ppo.reward_last" in version.metrics and "ppo.kl_last" in version.metrics
    before = load_file(str(tiny[1] / "model.safetensors"))
    after = load_file(str(version_folder(name, result.version) / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before), "PPO changed nothing"


def test_rlhf_job_options_and_inputs_are_checked(tiny, sessions, tmp_path):
    ctx = JobContext(
        name="rlhf-bad", task="translate", champion=tiny[1], out=tmp_path / "job",
        sessions=sessions, options={"steps": 1, "warp": 9},
    )  # fmt: skip
    with pytest.raises(RetrainError, match=r"unknown option.*warp"):
        run_job(ctx, "rlhf")
    bad_source = JobContext(**{**ctx.__dict__, "options": {"source": "robots"}})
    with pytest.raises(RetrainError, match="source 'robots'"):
        run_job(bad_source, "rlhf")
    empty = JobContext(**{**ctx.__dict__, "options": {"reward_model": str(tiny[2])}})
    with pytest.raises(RetrainError, match="no translate inputs to take prompts from"):
        run_job(empty, "rlhf")


def test_run_retraining_does_nothing_until_a_rule_fires(tiny, rated, probe, tmp_path):
    """Defaults (volume at 1000 ratings ...): 4 ratings fire nothing, nothing is trained.
    A rules file with volume.min_new = 4 fires: job, gate, state. The state's last_run
    then hides those ratings from the next check."""
    name = "round"
    one = _register(name, tiny[1], alias=None)
    promote(name, one)
    state = tmp_path / "state.json"
    idle = run_retraining(
        name, task="translate", probe=probe, sessions=rated, state_file=state,
        out=tmp_path / "r0", options=SHORT,
    )  # fmt: skip
    assert not idle.ran and idle.fired == [] and idle.job is None
    assert aliases(name) == {"champion": one} and not state.exists()

    rules = TriggerRules.model_validate({"volume": {"min_new": 4}})
    done = run_retraining(
        name, task="translate", probe=probe, sessions=rated, rules=rules, state_file=state,
        out=tmp_path / "r1", options=SHORT,
    )  # fmt: skip
    assert done.ran and done.fired == ["volume"] and done.job is not None
    assert done.gate is not None and done.gate.challenger_version == done.job.version
    assert aliases(name)["challenger"] == done.job.version
    saved = load_state(state)
    assert saved.last_run is not None and saved.last_decision == done.gate.decision
    _, value = done.gate.champion_after()
    assert saved.baseline == value and saved.history[-1].value == value
    assert saved.history[-1].source == "retrain" and saved.metric == "bleu"
    assert (tmp_path / "r1" / "retrain.json").is_file()

    after = run_retraining(
        name, task="translate", probe=probe, sessions=rated, rules=rules, state_file=state,
        out=tmp_path / "r2", options=SHORT,
    )  # fmt: skip
    assert not after.ran and "volume" not in after.fired
