"""Hard examples in training: the optional ``hardness`` of a row survives loading and ranks
its pair as harder in the curriculum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from taskloop.data.curriculum import difficulty
from taskloop.data.loader import load_file
from taskloop.data.pairs import Pair, to_pairs
from taskloop.data.records import TaskName, TranslateExample, Where
from taskloop.train.errors import TrainConfigError
from taskloop.train.inputs import read_inputs

WHERE = Where(file="hard.jsonl", row=1)


def pair(i: int, hardness: float | None, task: TaskName = "translate") -> Pair:
    """Identical text, so length and rarity rank every pair alike (0.5 each)."""
    return Pair(task, "the red cat", "die rote Katze", f"p{i}", f"f:{i}", hardness=hardness)


def test_hardness_is_optional_validated_and_blank_means_none() -> None:
    ex = TranslateExample(id="1", where=WHERE, source="x")
    assert ex.hardness is None
    assert TranslateExample(id="1", where=WHERE, source="x", hardness=0.25).hardness == 0.25
    assert TranslateExample(id="1", where=WHERE, source="x", hardness=" ").hardness is None
    for bad in (1.5, -0.1, float("nan"), "hard"):
        with pytest.raises(ValidationError, match="hardness"):
            TranslateExample(id="1", where=WHERE, source="x", hardness=bad)


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


HARD_ROWS: list[dict[str, Any]] = [
    {"task": "translate", "id": "h1", "source": "The dog sleeps.", "target": "Der Hund schläft.",
     "source_lang": "en", "target_lang": "de", "hardness": 0.8},
    {"task": "translate", "id": "e1", "source": "The cat sleeps.", "target": "Die Katze schläft.",
     "source_lang": "en", "target_lang": "de"},
    {"task": "qa", "id": "q1", "question": "Where?", "context": "In Rome.", "answers": [],
     "is_impossible": True, "hardness": 1.0},
]  # fmt: skip


def test_training_inputs_keep_hardness_into_the_pairs(tmp_path: Path) -> None:
    """read_inputs (what `taskloop train` reads data.train with) → examples → pairs."""
    path = write(tmp_path / "hard.jsonl", HARD_ROWS)
    inputs = read_inputs([str(path)])
    assert inputs.errors == [] and inputs.warnings == []
    assert {ex.id: ex.hardness for ex in inputs.examples} == {"h1": 0.8, "e1": None, "q1": 1.0}
    pairs = {p.id: p for p in to_pairs(inputs.examples)}
    assert (pairs["h1"].hardness, pairs["e1"].hardness, pairs["q1"].hardness) == (0.8, None, 1.0)
    assert pairs["q1"].target == "unanswerable"


def test_a_bad_hardness_is_a_bad_row_naming_the_field(tmp_path: Path) -> None:
    rows = [{**HARD_ROWS[0], "hardness": 2}, HARD_ROWS[1]]
    result = load_file(write(tmp_path / "hard.jsonl", rows))
    assert [(e.row, e.field) for e in result.errors] == [(1, "hardness")]
    assert [ex.id for g in result.groups for ex in g.examples] == ["e1"]


def test_a_hard_pair_ranks_above_an_otherwise_identical_easy_one() -> None:
    """Same text: length and rarity ranks 0.5 each. Hardness 0.9 vs 0.1 → ranks 1 and 0.
    No losses: weights length 0.4, rarity 0.3, hardness 0.3 (sum 1).
    hard = 0.4·0.5 + 0.3·0.5 + 0.3·1 = 0.65; easy = 0.35."""
    d = difficulty([pair(0, 0.9), pair(1, 0.1)])
    assert d == pytest.approx([0.65, 0.35])


def test_pairs_without_hardness_count_as_their_tasks_median() -> None:
    """Hardness 0.2, none, 0.8 → the missing one is the median 0.5 → ranks 0, 0.5, 1:
    0.35 + 0.3·rank = 0.35, 0.5, 0.65. The summarize pair has none in its task: rank 0.5.
    """
    pairs = [pair(0, 0.2), pair(1, None), pair(2, 0.8), pair(3, None, "summarize")]
    assert difficulty(pairs) == pytest.approx([0.35, 0.5, 0.65, 0.5])


def test_without_any_hardness_its_weight_is_dropped() -> None:
    """No pair carries a hardness: the result is that of length and rarity alone."""
    pairs = [
        Pair("translate", "the cat", "the dog", "a", "f:1"),
        Pair("translate", "zebra quokka axolotl", "narwhal okapi", "b", "f:2"),
    ]
    plain = difficulty(pairs, weights={"length": 0.4, "rarity": 0.3})
    assert np.array_equal(difficulty(pairs), plain)
    with pytest.raises(TrainConfigError, match="no pair carries a hardness"):
        difficulty(pairs, weights={"hardness": 1.0})


def test_training_loop_ranks_hard_rows_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The curriculum of `taskloop train` uses hardness although the config's weights do
    not name it: 12 identical copy rows (equal length, rarity and loss) with the hardness
    (5i mod 12)/11, a shuffle of 0..1, so the difficulty order must be the hardness order
    and not the row order."""
    pytest.importorskip("torch")
    from taskloop.data import curriculum
    from taskloop.models.tiny import build_tiny_model
    from taskloop.train.config import load_train_config
    from taskloop.train.loop import train

    model = build_tiny_model(tmp_path / "m", "seq2seq", texts=["red", "cat"], layers=1, width=16)
    rows = [
        {"task": "translate", "id": f"r{i}", "source": "red cat", "target": "red cat",
         "hardness": round((5 * i % 12) / 11, 4)}
        for i in range(12)
    ]  # fmt: skip
    data = write(tmp_path / "hard.jsonl", rows)
    seen: list[tuple[list[Pair], np.ndarray]] = []
    original = curriculum.difficulty

    def recording(pairs: list[Pair], **kw: Any) -> np.ndarray:
        out = original(pairs, **kw)
        seen.append((list(pairs), out))
        return out

    monkeypatch.setattr(curriculum, "difficulty", recording)
    cfg = load_train_config(None, [
        f"model.name={model}", f"data.train=[{data}]", f"out={tmp_path / 'run'}",
        "tracking.enabled=false", "data.clean.enabled=false", "run.device=cpu",
        "eval.every_steps=null", "eval.metric=loss", "checkpoint.every_steps=null",
        "batch.tokens=null", "batch.size=4", "run.max_steps=1", "curriculum.enabled=true",
    ])  # fmt: skip
    train(cfg)
    (pairs, d), *_ = seen
    hardness = np.array([p.hardness for p in pairs])
    assert len(set(hardness.tolist())) == len(pairs) > 1
    assert list(np.argsort(d, kind="stable")) == list(np.argsort(hardness, kind="stable"))
