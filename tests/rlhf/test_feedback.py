"""Feedback readers: every export shape, HH-RLHF dialogues, the live store, errors naming
file:line, the source filter and the prompt-grouped split."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskloop.rlhf.errors import FeedbackDataError
from taskloop.rlhf.feedback import (
    from_store,
    load_feedback,
    read_feedback,
    select_source,
    split_by_prompt,
    split_dialogue,
)
from taskloop.rlhf.records import PointLabel, PreferencePair
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import make_engine, repo, session_factory, session_scope, upgrade

QA_INPUT = {"question": "Who wrote it?", "context": "Ann wrote it."}
QA_PROMPT = "question: Who wrote it? context: Ann wrote it."

# Rows exactly as repo.export_feedback writes them (see tests/serve/test_storage.py).
PAIR_ROW = {
    "prompt": QA_PROMPT,
    "chosen": "Ann",
    "rejected": "Bob",
    "task": "qa",
    "source": "human",
    "weight": 1.0,
    "feedback_id": 4,
    "margin": None,
    "other_feedback_id": None,
    "origin": "preference",
}
GAP_ROW = PAIR_ROW | {
    "source": "simulated",
    "weight": 0.5,
    "margin": 3,
    "other_feedback_id": 8,
    "origin": "score_gap",
}
THUMB_ROW = {
    "prompt": QA_PROMPT,
    "completion": "Bob",
    "label": False,
    "task": "qa",
    "source": "simulated",
    "weight": 0.5,
    "feedback_id": 2,
}
SCORE_ROW = {
    "prompt": "D.",
    "completion": "Short.",
    "score": 1,
    "task": "summarize",
    "source": "human",
    "weight": 1.0,
    "feedback_id": 11,
}


def write_jsonl(path: Path, rows: list, *, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- export shapes ------------------------------------------------------------------------


# The preference and the score-gap pair of PAIR_ROW and GAP_ROW (and of _fill_store).
EXPECTED_PAIRS = [
    PreferencePair(QA_PROMPT, "Ann", "Bob", task="qa", origin="preference"),
    PreferencePair(
        QA_PROMPT, "Ann", "Bob", task="qa", source="simulated", weight=0.5, margin=3.0,
        origin="score_gap",
    ),
]  # fmt: skip


def test_every_export_shape_in_one_file(tmp_path: Path):
    """A pair, a score-gap pair, a thumb and a score, each its own shape by its keys."""
    path = write_jsonl(tmp_path / "export.jsonl", [PAIR_ROW, GAP_ROW, THUMB_ROW, SCORE_ROW])
    pairs, points = read_feedback(path)
    assert pairs == EXPECTED_PAIRS
    assert points == [
        PointLabel(QA_PROMPT, "Bob", label=False, task="qa", source="simulated", weight=0.5),
        PointLabel("D.", "Short.", score=1.0, task="summarize"),
    ]


def test_gzip_and_minimal_rows(tmp_path: Path):
    """.gz is read by its magic bytes; rows without task/source/weight get the defaults."""
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "completion": "a", "label": True},
        "",
        {"prompt": "p", "completion": "b", "score": 4.5},
    ]
    pairs, points = read_feedback(write_jsonl(tmp_path / "x.jsonl.gz", rows, gz=True))
    assert pairs == [PreferencePair("p", "a", "b")]
    assert points == [PointLabel("p", "a", label=True), PointLabel("p", "b", score=4.5)]


# --- HH-RLHF --------------------------------------------------------------------------------


def test_split_dialogue_at_last_assistant_turn():
    dialogue = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:  Like this."
    assert split_dialogue(dialogue) == (
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:",
        "Like this.",
    )
    assert split_dialogue("\n\nHuman: no answer") is None


def test_hh_rows_and_skips(tmp_path: Path):
    """Good rows become dataset pairs; a row whose dialogues differ before the last turn,
    one without an Assistant turn and one with equal answers are skipped and counted,
    each warning naming the first file:line."""
    base = "\n\nHuman: Can you help?\n\nAssistant:"
    rows = [
        {"chosen": base + " Sure.", "rejected": base + " No."},
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},
        {"chosen": "\n\nHuman: only a question", "rejected": "\n\nHuman: only"},
        {"chosen": base + " Same.", "rejected": base + "  Same."},
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: C\n\nAssistant: y"},
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    read = load_feedback(path)
    assert read.pairs == [PreferencePair(base, "Sure.", "No.", origin="dataset")]
    assert read.points == []
    assert dict(read.skipped) == {"hh_prompts_differ": 2, "hh_no_cue": 1, "same_response": 1}
    assert any("skipped 2 HH-RLHF" in w and f"{path}:2" in w for w in read.warnings)
    assert any("skipped 1" in w and f"{path}:3" in w for w in read.warnings)
    assert any("same text" in w and f"{path}:4" in w for w in read.warnings)


def test_real_hh_file_reads(shared_data: Path):
    """The shipped HH-RLHF harmless test split: 2,312 rows, a handful skipped, every pair
    shares its prompt and the prompt ends with the assistant cue."""
    read = load_feedback(shared_data / "preferences" / "hh_rlhf_harmless_base_test.jsonl.gz")
    assert len(read.pairs) + read.skipped.total() == 2312
    assert len(read.pairs) > 2250
    assert all(p.prompt.endswith("\n\nAssistant:") and p.chosen != p.rejected for p in read.pairs)
    assert {p.origin for p in read.pairs} == {"dataset"}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "must be a JSON object"),
        ('{"prompt": "p", "chosen": "a"}', "no feedback shape"),
        ('{"prompt": "p", "completion": "a", "label": "up"}', "'label' must be true"),
        ('{"prompt": "p", "completion": "a", "score": 7}', "between 1 and 5"),
        ('{"prompt": "p", "completion": "a", "score": null, "label": null}', "needs a 'label'"),
        ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "'prompt' must be text"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b", "source": "robot"}', "'source'"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b", "weight": -1}', "'weight'"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}', "'margin'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, line: str, needle: str):
    path = write_jsonl(tmp_path / "bad.jsonl", [PAIR_ROW, line])
    with pytest.raises(FeedbackDataError) as info:
        read_feedback(path)
    assert f"{path}:2" in info.value.message
    assert needle in info.value.message
    assert info.value.hint


def test_missing_and_empty_files(tmp_path: Path):
    with pytest.raises(FeedbackDataError, match="cannot read feedback file"):
        read_feedback(tmp_path / "nope.jsonl")
    with pytest.raises(FeedbackDataError, match="holds no feedback rows") as info:
        read_feedback(write_jsonl(tmp_path / "empty.jsonl", ["", ""]))
    assert "simulate" in (info.value.hint or "")


# --- the store -----------------------------------------------------------------------------


def _fill_store(url: str) -> None:
    """Two answers to one QA input: thumbs up p1, thumbs down p2 (simulated, 0.5),
    p1 preferred to p2, scores 5 (p1) and 2 (p2, simulated 0.5)."""
    upgrade(url)
    engine = make_engine(url)
    try:
        factory = session_factory(engine)
        with session_scope(factory) as s:
            for pid, output in (("p1", "Ann"), ("p2", "Bob")):
                repo.add_prediction(
                    s,
                    PredictionRecord(
                        id=pid,
                        task="qa",
                        input_hash=repo.hash_input(QA_INPUT),
                        input=QA_INPUT,
                        output=output,
                        status="ok",
                    ),
                )
            sim = {"source": "simulated", "weight": 0.5}
            for pid, kind, kw in (
                ("p1", "thumbs", {"thumbs": "up"}),
                ("p2", "thumbs", {"thumbs": "down", **sim}),
                ("p1", "preference", {"other_prediction_id": "p2", "preferred": "a"}),
                ("p1", "score", {"score": 5}),
                ("p2", "score", {"score": 2, **sim}),
            ):
                item = FeedbackIn(prediction_id=pid, kind=kind, **kw)  # type: ignore[arg-type]
                repo.add_feedback(s, item, rater="r")
    finally:
        engine.dispose()


def test_from_store_reads_every_shape(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    _fill_store(url)
    pairs, points = from_store(url)
    assert pairs == EXPECTED_PAIRS
    sim = {"source": "simulated", "weight": 0.5}
    assert points == [
        PointLabel(QA_PROMPT, "Ann", label=True, task="qa"),
        PointLabel(QA_PROMPT, "Bob", label=False, task="qa", **sim),  # type: ignore[arg-type]
        PointLabel(QA_PROMPT, "Ann", score=5.0, task="qa"),
        PointLabel(QA_PROMPT, "Bob", score=2.0, task="qa", **sim),  # type: ignore[arg-type]
    ]


def test_from_store_default_database(monkeypatch: pytest.MonkeyPatch):
    """None reads the service's own database: $TASKLOOP_HOME/serve.db (the test's home)."""
    import os

    monkeypatch.delenv("TASKLOOP_SERVE_DATABASE_URL", raising=False)
    home = Path(os.environ["TASKLOOP_HOME"])
    with pytest.raises(FeedbackDataError, match="no feedback database"):
        from_store()
    _fill_store(f"sqlite:///{home / 'serve.db'}")
    pairs, points = from_store()
    assert len(pairs) == 2 and len(points) == 4


def test_from_store_without_tables(tmp_path: Path):
    import sqlite3

    sqlite3.connect(tmp_path / "other.db").close()
    with pytest.raises(FeedbackDataError, match="no taskloop tables"):
        from_store(f"sqlite:///{tmp_path / 'other.db'}")


# --- source filter --------------------------------------------------------------------------


def test_select_source():
    pairs = [PreferencePair("p", "a", "b"), PreferencePair("q", "a", "b", source="simulated")]
    points = [
        PointLabel("p", "a", label=True, weight=2.0),
        PointLabel("q", "a", score=4, source="simulated", weight=0.5),
    ]
    human = select_source(pairs, points, "human", simulated_weight=0.1)
    assert human == ([pairs[0]], [points[0]])
    sim_pairs, sim_points = select_source(pairs, points, "simulated", simulated_weight=0.5)
    assert [p.weight for p in sim_pairs] == [0.5] and [p.weight for p in sim_points] == [0.25]
    all_pairs, all_points = select_source(pairs, points, "all", simulated_weight=0.5)
    assert [p.weight for p in all_pairs] == [1.0, 0.5]
    assert [p.weight for p in all_points] == [2.0, 0.25]
    with pytest.raises(FeedbackDataError, match="unknown source"):
        select_source(pairs, points, "robots")  # type: ignore[arg-type]
    with pytest.raises(FeedbackDataError, match=">= 0"):
        select_source(pairs, points, "all", simulated_weight=-1)


# --- split by prompt ------------------------------------------------------------------------


def test_split_by_prompt_crafted():
    """Prompt "a" has 3 rows, "b" 1, "c" 1: every row of a prompt lands on one side, the
    sides keep the input order, the same seed gives the same split."""
    items = [PreferencePair(p, "x", str(i)) for i, p in enumerate("aabcab")]
    train, valid = split_by_prompt(items, 0.3, seed=1)
    assert sorted(train + valid, key=lambda p: p.rejected) == items
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in valid})
    assert len(valid) >= 0.3 * len(items)
    assert train == [p for p in items if p in train]
    assert split_by_prompt(items, 0.3, seed=1) == (train, valid)
    assert split_by_prompt(items, 0.0, seed=1) == (items, [])
    # at least one prompt trains, whatever the fraction
    assert split_by_prompt(items, 0.99, seed=3)[0]
    with pytest.raises(FeedbackDataError, match=r"\[0, 1\)"):
        split_by_prompt(items, 1.0, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=40),
    fraction=st.floats(min_value=0.0, max_value=0.9),
    seed=st.integers(min_value=0, max_value=50),
)
def test_split_by_prompt_never_leaks(prompts: list[str], fraction: float, seed: int):
    items = [PointLabel(p, str(i), label=True) for i, p in enumerate(prompts)]
    train, valid = split_by_prompt(items, fraction, seed)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in valid})
    assert sorted(train + valid, key=lambda p: int(p.completion)) == items
    assert train, "at least one prompt always trains"
    if len(set(prompts)) > 1:
        assert len(valid) >= fraction * len(items) or len({p.prompt for p in train}) == 1
    assert split_by_prompt(items, fraction, seed) == (train, valid)
