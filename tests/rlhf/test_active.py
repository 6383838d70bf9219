"""Active learning: each signal on hand-made numbers, how they combine, what select picks,
and the queue they fill on a real SQLite database, read back through the HTTP API."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from taskloop.rlhf import active
from taskloop.rlhf.active import Candidate
from taskloop.rlhf.errors import ActiveLearningError
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, upgrade


def H(p: float) -> float:
    """Binary entropy in bits, written out."""
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- signals ------------------------------------------------------------------------


def test_binary_entropy_by_hand():
    """H(0.5) = 1 bit; H(0) = H(1) = 0; H(0.25) = 0.25·2 + 0.75·log2(4/3) = 0.811278."""
    got = active.binary_entropy([0.5, 0.0, 1.0, 0.25])
    assert got == pytest.approx([1.0, 0.0, 0.0, 0.811278], abs=1e-6)


def test_uncertainty_ranks_rewards_nearest_the_threshold_first():
    """Threshold 1.0: distances |r - 1| are 2.0, 0.1, 2.5, 0.8, 0 -> the reward 1.0 (1 bit),
    then 1.1, 0.2, 3.0, -1.5. H(σ(0.1)) = H(0.52498) = 0.99820."""
    rewards = [3.0, 1.1, -1.5, 0.2, 1.0]
    got = active.threshold_uncertainty(rewards, 1.0)
    assert got == pytest.approx([H(sig(r - 1.0)) for r in rewards], abs=1e-9)
    assert got[1] == pytest.approx(0.99820, abs=1e-5)
    assert got[4] == pytest.approx(1.0)
    assert list(np.argsort(-got)) == [4, 1, 3, 0, 2]
    # scale: a reward 2 away with scale 2 is as unsure as one 1 away with scale 1
    assert active.threshold_uncertainty([3.0], 1.0, scale=2.0)[0] == pytest.approx(H(sig(1.0)))


def test_pair_uncertainty_is_one_for_equal_rewards_and_symmetric():
    """σ(r_a - r_b) = 0.5 for equal rewards (1 bit); (2, 0) and (0, 2) both give H(σ(2))
    = H(0.880797) = 0.880797·0.183118 + 0.119203·3.068509 = 0.527065."""
    got = active.pair_uncertainty([1.5, 2.0, 0.0], [1.5, 0.0, 2.0])
    assert got == pytest.approx([1.0, 0.527065, 0.527065], abs=1e-6)


def test_ensemble_disagreement_by_hand():
    """Per candidate, p_m = σ(r_m - t_m), 2·std over models.

    Two models, thresholds 0 and 5: candidate 1 has p = (σ(20), σ(-20)) ≈ (1, 0): std 0.5
    -> 1; candidate 2 has p = (σ(0), σ(0)) = (0.5, 0.5): 0 (the second model's reward 5 is
    at its own threshold, so the raw rewards 0 and 5 do not count as disagreement).
    Three models with r - t = (ln 3, -ln 3, ln 3): p = (3/4, 1/4, 3/4), mean 7/12,
    std = sqrt(((1/6)² + (1/3)² + (1/6)²) / 3) = sqrt(1/18) = 0.235702 -> 0.471405.
    """
    two = active.ensemble_disagreement([[20.0, 0.0], [-15.0, 5.0]], [0.0, 5.0])
    assert two == pytest.approx([1.0, 0.0], abs=1e-6)
    ln3 = math.log(3)
    three = active.ensemble_disagreement([[ln3], [-ln3], [ln3]], [0.0, 0.0, 0.0])
    assert three[0] == pytest.approx(2 * math.sqrt(1 / 18), abs=1e-9)
    with pytest.raises(ActiveLearningError, match="models >= 2"):
        active.ensemble_disagreement([[1.0, 2.0]], [0.0])


def test_answer_disagreement_by_hand():
    """1 - mean pairwise token F1: "the Danube" vs "Danube" normalise alike (F1 1) -> 0;
    "red blue" vs "red green" share 1 of 2 tokens each side (F1 0.5) -> 0.5; three
    answers a="red blue", b="red green", c="yellow": F1 0.5, 0, 0 -> 1 - 1/6."""
    assert active.answer_disagreement(["the Danube", "Danube"]) == pytest.approx(0.0)
    assert active.answer_disagreement(["Danube", "Mur"]) == pytest.approx(1.0)
    assert active.answer_disagreement(["red blue", "red green"]) == pytest.approx(0.5)
    three = active.answer_disagreement(["red blue", "red green", "yellow"])
    assert three == pytest.approx(1 - 1 / 6)
    assert active.answer_disagreement(["only one"]) is None


def test_confidence_is_read_from_what_a_task_stores_and_never_invented():
    assert active.confidence_of({"confidence": 0.8}) == pytest.approx(0.8)
    assert active.confidence_of({}, {"confidence": 0.3, "evidence": "x"}) == pytest.approx(0.3)
    # exp(mean token log-prob): ln 0.5 -> 0.5
    assert active.confidence_of({"mean_logprob": math.log(0.5)}) == pytest.approx(0.5)
    # a QA prediction as the service stores it (exact/F1 against gold): no confidence
    assert active.confidence_of({"exact": 1.0, "f1": 1.0}) is None
    assert active.confidence_of({"confidence": True}) is None
    assert active.confidence_of({"confidence": float("nan")}) is None
    assert active.low_confidence(0.8) == pytest.approx(0.2)
    assert active.low_confidence(None) is None


def test_qa_predictions_carry_the_confidence_the_signal_reads():
    """The offline QA path stores ``details["confidence"]``: the signal applies to it, and
    the same prediction's ``scores`` alone (what the service stores) hold none."""
    from taskloop.data.records import QAExample, Where
    from taskloop.tasks import qa
    from taskloop.tasks.context import FileOptions, Resources, TaskContext

    ex = QAExample(
        id="1",
        where=Where(file="qa.jsonl", row=1),
        question="Which river flows through Vienna?",
        context="Vienna lies on the Danube. Graz lies on the Mur.",
        answers=["the Danube"],
    )
    ctx = TaskContext(
        file="qa.jsonl", options=FileOptions(task="qa"), resources=Resources(device="cpu")
    )
    pred = qa.run([ex], ctx)[0]
    conf = active.confidence_of(pred.scores, pred.details)
    assert conf is not None and conf == pytest.approx(pred.details["confidence"])
    assert active.confidence_of(pred.scores) is None


def test_drift_percentile_on_a_line_by_hand():
    """Reference points 0, 1, 3, 6, 10 on a line.

    k=1: leave-one-out nearest distances 1, 1, 2, 3, 4. A candidate at 4.5 is 1.5 from
    its nearest (3 and 6): 2 of 5 reference distances are <= 1.5 -> 0.4; one at 1 is 0
    away -> 0.0; one at 20 is 10 away -> 1.0.
    k=2: reference means (1+3)/2=2, (1+2)/2=1.5, (2+3)/2=2.5, (3+4)/2=3.5, (4+7)/2=5.5;
    the candidate at 4.5: (1.5+1.5)/2 = 1.5 -> 1 of 5 -> 0.2.
    """
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [6.0, 0.0], [10.0, 0.0]])
    cand = np.array([[4.5, 0.0], [1.0, 0.0], [20.0, 0.0]])
    assert active.drift_percentile(cand, ref, k=1) == pytest.approx([0.4, 0.0, 1.0])
    assert active.drift_percentile(cand[:1], ref, k=2) == pytest.approx([0.2])
    with pytest.raises(ActiveLearningError, match="at least 2 reference"):
        active.drift_percentile(cand, ref[:1], k=1)


def test_drift_with_the_real_encoder_puts_an_off_topic_input_far_out():
    from taskloop.models.encoder import load_encoder

    reference = [
        "Which river flows through Vienna?",
        "What is the capital of Austria?",
        "Which river runs through Budapest?",
        "What is the largest city in Hungary?",
        "Which mountains lie south of Munich?",
        "What is the capital of Slovakia?",
        "Which sea does the Danube flow into?",
        "How long is the river Rhine?",
    ]
    cands = [
        Candidate(id="near", task="qa", input={}, text="Which river flows through Prague?"),
        Candidate(
            id="far",
            task="qa",
            input={},
            text="def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
        ),
    ]
    got = active.candidate_signals(
        cands, reference=reference, embedder=load_encoder(), k_neighbours=3
    )
    near, far = (c.signals["drift"] for c in got)
    assert far == pytest.approx(1.0)
    assert near is not None and near < far


# --- combining and selecting ---------------------------------------------------------


def test_priority_is_the_weighted_mean_of_the_signals_that_apply():
    """(2·0.9 + 1·0.3) / (2 + 1) = 0.7; low_confidence is None and does not count."""
    signals = {"uncertainty": 0.9, "drift": 0.3, "low_confidence": None}
    assert active.priority(signals, {"uncertainty": 2.0}) == pytest.approx(0.7)
    assert active.priority(signals) == pytest.approx(0.6)  # all weights 1
    assert active.priority({"drift": None}) == 0.0
    assert active.priority(signals, {"uncertainty": 0.0}) == pytest.approx(0.3)
    with pytest.raises(ActiveLearningError, match="unknown signal 'size'"):
        active.priority(signals, {"size": 1.0})
    with pytest.raises(ActiveLearningError, match="outside"):
        active.priority({"drift": 1.5})
    with pytest.raises(ActiveLearningError, match=">= 0"):
        active.priority(signals, {"drift": -1.0})


def test_reason_names_the_signals_that_weigh_most():
    signals = {"uncertainty": 0.4, "drift": 0.95, "low_confidence": 0.6, "disagreement": None}
    assert active.reason(signals) == (
        "unlike the reference inputs (0.95); model unsure of its answer (0.60)"
    )
    assert active.reason(signals, {"uncertainty": 3.0}, top=1) == (
        "reward near the accept threshold (0.40)"
    )


def _cands(values: Sequence[float | None], **extra: float | None) -> list[Candidate]:
    return [
        Candidate(
            id=f"c{i}",
            task="qa",
            input={"question": f"q{i}", "context": "c"},
            signals={"uncertainty": v, **extra},
        )
        for i, v in enumerate(values)
    ]


def test_select_picks_the_most_uncertain_and_breaks_ties_by_input_order():
    cands = _cands([0.2, 0.9, 0.9, 0.5, None])
    got = active.select(cands, 3, strategy="uncertainty")
    assert [s.candidate_id for s in got] == ["c1", "c2", "c3"]
    assert [s.priority for s in got] == pytest.approx([0.9, 0.9, 0.5])
    assert got[0].reason == "reward near the accept threshold (0.90)"
    # the tie follows the order given, not the ids
    flipped = [cands[2], cands[1], cands[0]]
    assert [s.candidate_id for s in active.select(flipped, 2, strategy="uncertainty")] == [
        "c2",
        "c1",
    ]
    # no signal applies to c4: never picked by a signal, however large k
    assert "c4" not in {s.candidate_id for s in active.select(cands, 10, strategy="uncertainty")}


def test_uncertainty_strategy_ignores_other_signals_and_combined_uses_them():
    drifted = Candidate(id="drifted", task="qa", input={"question": "z"}, signals={"drift": 1.0})
    cands = [*_cands([0.6, 0.5]), drifted]
    assert [s.candidate_id for s in active.select(cands, 1, strategy="uncertainty")] == ["c0"]
    assert [s.candidate_id for s in active.select(cands, 1, strategy="combined")] == ["drifted"]
    # turning drift off puts uncertainty back in front
    off = active.select(cands, 1, strategy="combined", weights={"drift": 0.0})
    assert [s.candidate_id for s in off] == ["c0"]


def test_select_takes_an_input_once_unless_duplicates_are_kept():
    same = {"question": "q", "context": "c"}
    cands = [
        Candidate(id="a", task="qa", input=same, output="x", signals={"uncertainty": 0.7}),
        Candidate(id="b", task="qa", input=same, output="y", signals={"uncertainty": 0.9}),
        Candidate(id="c", task="qa", input={"question": "other"}, signals={"uncertainty": 0.1}),
    ]
    assert [s.candidate_id for s in active.select(cands, 3)] == ["b", "c"]
    kept = active.select(cands, 3, dedupe=False)
    assert [s.candidate_id for s in kept] == ["b", "a", "c"]


def test_random_strategy_is_seeded():
    cands = _cands([None] * 30)
    one = [s.candidate_id for s in active.select(cands, 5, strategy="random", seed=3)]
    again = [s.candidate_id for s in active.select(cands, 5, strategy="random", seed=3)]
    other = [s.candidate_id for s in active.select(cands, 5, strategy="random", seed=4)]
    assert one == again and one != other and len(set(one)) == 5
    expected = [f"c{i}" for i in np.random.default_rng(3).permutation(30)[:5]]
    assert one == expected
    assert active.select(cands, 1, strategy="random", seed=3)[0].reason == "random sample (seed 3)"


def test_select_refuses_when_no_candidate_has_a_usable_signal():
    with pytest.raises(ActiveLearningError, match="uses \\(uncertainty, pair_uncertainty\\)"):
        active.select(_cands([None, None], drift=0.5), 2, strategy="uncertainty")
    with pytest.raises(ActiveLearningError, match="unknown strategy"):
        active.select(_cands([0.5]), 1, strategy="loudest")  # type: ignore[arg-type]
    assert active.select([], 3) == []


class WordCountReward:
    """A reward model that is a plain rule: reward = words in the answer; accept at 3."""

    threshold: float | None = 3.0

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        assert len(prompts) == len(completions)
        return np.array([len(c.split()) for c in completions], dtype=np.float64)


class NegatedReward(WordCountReward):
    """The opposite rule, with no tuned threshold (centred on the median reward)."""

    threshold = None

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        return -super().score(prompts, completions)


def test_candidate_signals_from_reward_models_and_answers():
    """With the word-count reward (threshold 3): "a b c" (3 words) is at the threshold -> 1;
    "w " * 9 -> H(σ(6)). Two answers to one input with 4 and 4 words: pair uncertainty
    H(σ(0)) = 1; their answer disagreement: "x y z q" vs "x y z r" share 3 of 4 tokens
    (F1 0.75) -> 0.25. A candidate without an answer gets no reward signals."""
    q = {"question": "same", "context": "c"}
    cands = [
        Candidate(id="at", task="qa", input={"question": "1"}, output="a b c"),
        Candidate(id="far", task="qa", input={"question": "2"}, output="w " * 9),
        Candidate(id="p1", task="qa", input=q, output="x y z q"),
        Candidate(id="p2", task="qa", input=q, output="x y z r"),
        Candidate(id="none", task="qa", input={"question": "3"}, confidence=0.9),
    ]
    got = {
        c.id: c.signals for c in active.candidate_signals(cands, reward_models=[WordCountReward()])
    }
    assert got["at"]["uncertainty"] == pytest.approx(1.0)
    assert got["far"]["uncertainty"] == pytest.approx(H(sig(6.0)))
    assert got["p1"]["pair_uncertainty"] == pytest.approx(1.0)
    assert got["p1"]["answer_disagreement"] == pytest.approx(0.25)
    assert got["at"]["pair_uncertainty"] is None and got["at"]["answer_disagreement"] is None
    assert got["none"]["uncertainty"] is None and got["none"]["low_confidence"] == pytest.approx(
        0.1
    )
    assert got["at"]["disagreement"] is None  # one model: no ensemble
    assert all(s["drift"] is None for s in got.values())  # no reference

    both = active.candidate_signals(cands[:2], reward_models=[WordCountReward(), NegatedReward()])
    # model 2: rewards -3, -9, median -6 -> p = σ(3), σ(-3); model 1: p = σ(0), σ(6)
    p_at = [sig(0.0), sig(3.0)]
    assert both[0].signals["disagreement"] == pytest.approx(2 * float(np.std(p_at)))
    assert both[0].signals["uncertainty"] == pytest.approx((H(sig(0.0)) + H(sig(3.0))) / 2)


def test_a_reward_model_with_the_wrong_number_of_scores_is_an_error():
    class Short(WordCountReward):
        def score(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
            return np.zeros(len(completions) - 1)

    cands = [Candidate(id=str(i), task="qa", input={"q": i}, output="a") for i in range(3)]
    with pytest.raises(ActiveLearningError, match="returned 2 scores for 3 answers"):
        active.candidate_signals(cands, reward_models=[Short()])


def test_rows_with_answers_become_candidates():
    rows = [
        (
            1,
            {
                "task": "qa",
                "id": "r1",
                "question": "q",
                "context": "c",
                "output": "a",
                "confidence": 0.2,
            },
        ),
        (2, {"question": "q2", "context": "c", "outputs": ["a", "b"]}),
        (3, {"question": "q3", "context": "c"}),
    ]
    got = active.from_rows(rows, task="qa", source="rows.jsonl")
    assert [c.id for c in got] == ["r1", "rows.jsonl:2#1", "rows.jsonl:2#2", "rows.jsonl:3"]
    assert got[0].input == {"question": "q", "context": "c"} and got[0].confidence == 0.2
    assert got[1].key == got[2].key and got[1].output == "a" and got[2].output == "b"
    assert got[3].output is None and got[0].text == "q"
    with pytest.raises(ActiveLearningError, match=r"rows\.jsonl:1: the row names no task"):
        active.from_rows([(1, {"question": "q"})], task=None, source="rows.jsonl")


# --- the queue on a real database ------------------------------------------------------


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def _prediction(pid: str, question: str, output: str = "ans", **scores: float) -> PredictionRecord:
    value = {"question": question, "context": "Vienna lies on the Danube."}
    return PredictionRecord(
        id=pid,
        task="qa",
        input_hash=repo.hash_input(value),
        input=value,
        output=output,
        status="ok",
        scores=dict(scores),
    )


def test_enqueue_writes_priority_and_reason_and_skips_open_duplicates(factory):
    with factory() as s:
        for i, conf in enumerate([0.9, 0.2, 0.6]):
            repo.add_prediction(s, _prediction(f"p{i}", f"question {i}", confidence=conf))
        cands = active.candidate_signals(active.from_predictions(active.unrated_predictions(s)))
        chosen = active.select(cands, 2)
        ids = active.enqueue(s, chosen)
        assert len(ids) == 2
        items = repo.queue_items(s, 10)
        assert [i["prediction_id"] for i in items] == ["p1", "p2"]
        assert [i["priority"] for i in items] == pytest.approx([0.8, 0.4])
        assert items[0]["reason"] == "model unsure of its answer (0.80)"
        # queued and not rated: skipped
        assert active.enqueue(s, chosen) == []
        assert active.open_queue_keys(s) == {
            ("qa", repo.hash_input(_prediction("x", f"question {i}").input)) for i in (1, 2)
        }
        # once rated, the item is done and the input can be queued again
        repo.add_feedback(s, FeedbackIn(prediction_id="p1", kind="thumbs", thumbs="up"), "ann")
        assert len(active.enqueue(s, chosen[:1])) == 1


def test_unrated_predictions_leave_out_what_people_rated(factory):
    with factory() as s:
        for pid in ("thumbed", "simulated", "commented", "pref_a", "pref_b", "fresh"):
            repo.add_prediction(
                s, _prediction(pid, "same question" if pid.startswith("pref") else pid)
            )
        repo.add_feedback(s, FeedbackIn(prediction_id="thumbed", kind="thumbs", thumbs="up"), "ann")
        repo.add_feedback(
            s,
            FeedbackIn(prediction_id="simulated", kind="score", score=4, source="simulated"),
            "bot",
        )
        repo.add_feedback(
            s, FeedbackIn(prediction_id="commented", kind="comment", comment="hm"), "ann"
        )
        repo.add_feedback(
            s,
            FeedbackIn(
                prediction_id="pref_a",
                kind="preference",
                other_prediction_id="pref_b",
                preferred="a",
            ),
            "ann",
        )
        got = {r.id for r in active.unrated_predictions(s)}
        assert got == {"simulated", "commented", "fresh"}
        assert active.unrated_predictions(s, task="translate") == []
        assert len(active.unrated_predictions(s, limit=1)) == 1


def test_the_queue_endpoint_shows_queued_items_first_in_priority_order(tmp_path: Path):
    from fastapi.testclient import TestClient

    from taskloop.serve.app import create_app
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.settings import ServeSettings

    settings = ServeSettings(
        database_url=f"sqlite:///{tmp_path / 'serve.db'}",
        jwt_secret="a-test-secret-that-is-long-enough-for-hs256",
        rate_per_minute=10_000,
        rate_burst=1_000,
    )
    app = create_app(settings, warm_up=False)
    with app.state.sessions() as s:
        repo.create_user(s, "rater", hash_secret("pw"), ["feedback:write"])
        # the newest prediction is the least urgent: order must come from the priority
        for i, conf in enumerate([0.5, 0.05, 0.3, 0.95]):
            repo.add_prediction(s, _prediction(f"p{i}", f"question {i}", confidence=conf))
        cands = active.candidate_signals(active.from_predictions(active.unrated_predictions(s)))
        active.enqueue(s, active.select(cands, 3))
    with TestClient(app) as client:
        form = {"grant_type": "password", "username": "rater", "password": "pw"}
        token = client.post("/v1/auth/token", data=form).json()["access_token"]
        r = client.get("/v1/feedback/queue", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        items = r.json()
    assert [(i["prediction_id"], i["queued"]) for i in items] == [
        ("p1", True),
        ("p2", True),
        ("p0", True),
        ("p3", False),
    ]
    assert items[0]["reason"] == "model unsure of its answer (0.95)"
    assert items[0]["output"] == "ans"
