"""Curriculum: difficulty ranks, metric-driven pacing, and selection of the easiest examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskloop.data.curriculum import (
    Pacing,
    PacingState,
    curriculum_learning,
    describe,
    difficulty,
    percentile_rank,
    update_pacing,
)
from taskloop.data.pairs import Pair
from taskloop.data.records import TaskName
from taskloop.train.errors import CheckpointError, TrainConfigError, TrainDataError


def pair(source: str, target: str, task: TaskName = "translate", i: int = 0) -> Pair:
    return Pair(task, source, target, f"{task}-{i}", f"data/{task}.jsonl:{i}")


# a, b: short and common; c: longer and every word seen once.
A = pair("the cat", "the dog", i=0)
B = pair("the cat", "the cat", i=1)
C = pair("zebra quokka axolotl", "narwhal okapi", i=2)


def run(pacing: Pacing, metrics: list[float]) -> list[PacingState]:
    states, state = [], PacingState(c=pacing.start)
    for k, metric in enumerate(metrics):
        state = update_pacing(state, metric, (k + 1) * 100, pacing)
        states.append(state)
    return states


def test_percentile_rank_ties_and_single_value() -> None:
    """[4, 4, 5]: the tie shares ranks 0 and 1 (mean 0.5), 5 has rank 2; divided by n-1=2."""
    assert percentile_rank(np.array([4.0, 4.0, 5.0])).tolist() == [0.25, 0.25, 1.0]
    assert percentile_rank(np.array([7.0])).tolist() == [0.5]
    assert percentile_rank(np.array([3.0, 3.0])).tolist() == [0.5, 0.5]


def test_short_common_words_are_easier_than_long_rare_words() -> None:
    """Lengths a=4, b=4, c=5 → ranks 0.25, 0.25, 1.

    Word counts (13 words): the 4, cat 3, dog 1, five others 1. Mean -log frequency:
    b (the, cat only) < a (has "dog") < c (all seen once) → rarity ranks a 0.5, b 0, c 1.
    No losses: weights 0.4/0.3 renormalise to 4/7, 3/7.
    a = 4/7·0.25 + 3/7·0.5 = 2.5/7; b = 4/7·0.25 = 1/7; c = 1.
    """
    d = difficulty([A, B, C])
    assert d == pytest.approx([2.5 / 7, 1 / 7, 1.0])
    assert list(np.argsort(d)) == [1, 0, 2]


def test_losses_dominate_when_their_weight_is_high() -> None:
    """Loss ranks (5, 9, 0.1) → a 0.5, b 1, c 0; length and rarity ranks as above.

    a = 0.1·0.25 + 0.1·0.5 + 0.8·0.5 = 0.475; b = 0.1·0.25 + 0 + 0.8 = 0.825;
    c = 0.1·1 + 0.1·1 + 0 = 0.2: the long rare pair is now the easiest.
    """
    w = {"length": 0.1, "rarity": 0.1, "loss": 0.8}
    d = difficulty([A, B, C], losses=[5.0, 9.0, 0.1], weights=w)
    assert d == pytest.approx([0.475, 0.825, 0.2])
    assert list(np.argsort(d)) == [2, 0, 1]


def test_tasks_of_different_length_scales_get_comparable_ranks() -> None:
    """qa lengths 10/30/20 and summarize 300/100/200 each rank 0, 0.5, 1 within their task."""
    pairs = [pair("x", "y", "qa" if i % 2 == 0 else "summarize", i) for i in range(6)]
    d = difficulty(pairs, token_lengths=[10, 300, 30, 100, 20, 200], weights={"length": 1.0})
    assert d.tolist() == [0.0, 1.0, 1.0, 0.0, 0.5, 0.5]


def test_difficulty_rejects_bad_weights_and_mismatched_inputs() -> None:
    with pytest.raises(TrainConfigError, match="unknown") as err:
        difficulty([A, B], weights={"length": 1.0, "size": 1.0})
    assert err.value.code == "train.config"
    with pytest.raises(TrainConfigError, match="no losses"):
        difficulty([A, B], weights={"loss": 1.0})  # the only weight is dropped
    with pytest.raises(TrainConfigError, match=">= 0"):
        difficulty([A, B], weights={"length": -1.0})
    with pytest.raises(TrainDataError, match="one value per pair"):
        difficulty([A, B], token_lengths=[3])
    with pytest.raises(TrainDataError, match=r"losses\[1\]"):
        difficulty([A, B], losses=[1.0, math.nan])
    assert difficulty([]).shape == (0,)


def test_pacing_follows_a_scripted_metric_sequence() -> None:
    """start 0.3, step 0.2, backoff 0.1; metrics 0.1, 0.2, 0.2, 0.15, 0.3.

    0.1 sets the best (0.3); 0.2 improves (0.5); 0.2 ties, no change (0.5);
    0.15 drops below 0.2 (0.4); 0.3 beats 0.2 (0.6).
    """
    states = run(Pacing(start=0.3, step=0.2, backoff=0.1), [0.1, 0.2, 0.2, 0.15, 0.3])
    assert [s.c for s in states] == [0.3, 0.5, 0.5, 0.4, 0.6]
    assert states[-1].best == 0.3
    assert states[-1].history == [
        (100, 0.1, 0.3),
        (200, 0.2, 0.5),
        (300, 0.2, 0.5),
        (400, 0.15, 0.4),
        (500, 0.3, 0.6),
    ]


def test_min_delta_and_tolerance() -> None:
    """min_delta = tolerance = 0.05, best 0.5: 0.54 (+0.04) no step; 0.56 (+0.06) step, best
    0.56; 0.52 (-0.04) within tolerance; 0.45 (-0.11) backs off: 0.3, 0.3, 0.5, 0.5, 0.4."""
    pacing = Pacing(start=0.3, step=0.2, backoff=0.1, min_delta=0.05, tolerance=0.05)
    states = run(pacing, [0.5, 0.54, 0.56, 0.52, 0.45])
    assert [s.c for s in states] == [0.3, 0.3, 0.5, 0.5, 0.4]
    assert [s.best for s in states] == [0.5, 0.5, 0.56, 0.56, 0.56]


def test_competence_stays_between_floor_and_one() -> None:
    """Default floor = start: drops keep 0.3. floor 0.1: 0.3 → 0.2 → 0.1 → 0.1.
    start 0.5, step 0.3: 0.8, then 1.1 capped to 1.0."""
    falling = [0.5, 0.4, 0.3, 0.2, 0.1]
    assert [s.c for s in run(Pacing(start=0.3), falling)] == [0.3] * 5
    floored = run(Pacing(start=0.3, backoff=0.1, floor=0.1), falling)
    assert [s.c for s in floored] == [0.3, 0.2, 0.1, 0.1, 0.1]
    rising = run(Pacing(start=0.5, step=0.3), [0.0, 1.0, 2.0, 3.0])
    assert [s.c for s in rising] == [0.5, 0.8, 1.0, 1.0]


def test_lower_is_better_metric() -> None:
    """Validation loss 2.0, 1.5 (better: 0.5), 1.6 (worse: 0.4), 1.0 (better than 1.5: 0.6)."""
    pacing = Pacing(start=0.3, step=0.2, backoff=0.1, higher_is_better=False)
    states = run(pacing, [2.0, 1.5, 1.6, 1.0])
    assert [s.c for s in states] == [0.3, 0.5, 0.4, 0.6]
    assert states[-1].best == 1.0


def test_update_is_pure_and_rejects_nan() -> None:
    state = PacingState(c=0.3, best=0.1, history=[(1, 0.1, 0.3)])
    new = update_pacing(state, 0.9, 2, Pacing())
    assert new.c == 0.45 and state.c == 0.3 and state.history == [(1, 0.1, 0.3)]
    with pytest.raises(TrainDataError, match="step 3"):
        update_pacing(state, math.nan, 3, Pacing())


def test_pacing_validates_its_settings() -> None:
    assert Pacing(start=0.4).floor == 0.4
    for bad in ({"start": 0.0}, {"start": 1.2}, {"start": 0.3, "floor": 0.5}, {"step": -0.1}):
        with pytest.raises(TrainConfigError):
            Pacing(**bad)  # type: ignore[arg-type]


def test_state_round_trips_through_json_and_resumes_exactly() -> None:
    pacing = Pacing(start=0.3, step=0.2, backoff=0.1)
    state = run(pacing, [0.1, 0.2, 0.15])[-1]
    restored = PacingState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert update_pacing(restored, 0.3, 400, pacing) == update_pacing(state, 0.3, 400, pacing)
    assert PacingState.from_dict({"c": 0.3, "best": None, "history": []}) == PacingState(c=0.3)
    with pytest.raises(CheckpointError, match="malformed"):
        PacingState.from_dict({"c": 0.3, "history": []})
    with pytest.raises(CheckpointError):
        PacingState.from_dict({"c": 0.3, "best": 1.0, "history": [[1, 2]]})


def test_curriculum_learning_picks_the_easiest_and_at_least_one() -> None:
    """d = 0.9 0.1 0.5 0.1 0.7: order 1, 3 (tie, by index), 2, 4, 0; ceil(0.4·5) = 2."""
    d = np.array([0.9, 0.1, 0.5, 0.1, 0.7])
    assert curriculum_learning(d, 0.4).tolist() == [1, 3]
    assert curriculum_learning(d, 0.0).tolist() == [1]
    assert curriculum_learning(d, 1.0).tolist() == [1, 3, 2, 4, 0]
    assert len(curriculum_learning(np.arange(100.0), 0.55)) == 55  # 0.55·100 = 55.00000000000001
    assert curriculum_learning(np.zeros(0), 0.5).tolist() == []
    with pytest.raises(TrainConfigError):
        curriculum_learning(d, 1.5)


@given(
    d=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=40),
    c1=st.floats(0.0, 1.0),
    c2=st.floats(0.0, 1.0),
)
def test_curriculum_learning_is_a_growing_prefix_of_the_difficulty_order(
    d: list[float], c1: float, c2: float
) -> None:
    arr = np.array(d)
    order = np.argsort(arr, kind="stable").tolist()
    lo, hi = sorted((c1, c2))
    small, large = curriculum_learning(arr, lo).tolist(), curriculum_learning(arr, hi).tolist()
    assert 1 <= len(small) <= len(large) <= len(arr)
    assert small == order[: len(small)] and large == order[: len(large)]
    assert len(large) >= math.ceil(hi * len(arr) - 1e-6)


def test_describe_reports_competence_and_history() -> None:
    qa = run(Pacing(start=0.3, step=0.2), [0.1, 0.2])[-1]
    report = describe({"qa": qa, "translate": PacingState(c=0.3)})
    assert report.competence == {"qa": 0.5, "translate": 0.3}
    assert report.history["qa"] == [
        {"step": 100, "metric": 0.1, "competence": 0.3},
        {"step": 200, "metric": 0.2, "competence": 0.5},
    ]
    assert report.history["translate"] == []
