"""A tuned ``summarize.factuality`` threshold replaces ENTAILMENT_MIN for its NLI model.

The NLI model is a tiny random BERT classifier: its probabilities are noise, so the
tests put the threshold exactly at the summary's lowest sentence entailment and one
float above it, where the entailment check must pass and fail.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from taskloop.evaluate.thresholds import (
    SUMMARIZE_FACTUALITY,
    THRESHOLDS_FILE,
    save_thresholds,
    threshold_tuning,
)
from taskloop.models.encoder import Encoder, load_encoder
from taskloop.tasks import factcheck, summarize
from taskloop.tasks.context import FileOptions, Resources, TaskContext
from tests.tasks.test_factcheck import HEAT, build_tiny_nli

SUMMARY = "Pools stay open until 10 pm. Officials advise water."
LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("TASKLOOP_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder(device="cpu")


@pytest.fixture
def nli_folder(tmp_path: Path) -> Path:
    return build_tiny_nli(tmp_path / "nli", LABELS)


def save(t: float, folder: Path, score_name: str = factcheck.FACTUALITY_SCORE) -> Path:
    """summarize.factuality = t: max F1 on scores (t, t - 1) with labels (1, 0) is t."""
    th = threshold_tuning([t, t - 1], [1, 0], name=SUMMARIZE_FACTUALITY, score_name=score_name)
    return save_thresholds(th, folder)


def entailment_check(fc: factcheck.FactCheck) -> bool:
    return next(c for c in factcheck.to_checks(fc) if c.name == "entailment").passed


def test_tuned_threshold_replaces_the_constant(encoder: Encoder, nli_folder: Path) -> None:
    """The check passes when every sentence's entailment reaches the threshold, i.e. when
    the lowest (entailment_score) does: at t = entailment_score it passes, one float
    above it fails. Without a file the constant 0.5 stays."""
    nli = factcheck.load_nli(str(nli_folder), device="cpu")
    assert factcheck.with_tuned_threshold(nli) is nli  # no file: unchanged
    fc = factcheck.check_summary(SUMMARY, HEAT, encoder, nli=nli)
    low = fc.entailment_score
    assert fc.entailment_min == factcheck.ENTAILMENT_MIN
    assert low == min(s.entailment for s in fc.sentences if s.entailment is not None)
    assert entailment_check(fc) == (low >= factcheck.ENTAILMENT_MIN)

    file = save(low, nli_folder)
    assert file == nli_folder / THRESHOLDS_FILE
    tuned = factcheck.with_tuned_threshold(nli)
    assert tuned.entailment_min == low and tuned.threshold_source == f"tuned: {file}"
    assert tuned.lock is nli.lock  # the model is shared, so is its lock
    at = factcheck.check_summary(SUMMARY, HEAT, encoder, nli=tuned)
    assert at.entailment_min == low and entailment_check(at)

    save(math.nextafter(low, math.inf), nli_folder)
    above = factcheck.check_summary(SUMMARY, HEAT, encoder, nli=factcheck.with_tuned_threshold(nli))
    assert not entailment_check(above)
    assert any("entailment" in r for s in above.sentences for r in s.reasons)


def context(nli_folder: Path) -> TaskContext:
    return TaskContext(
        file="data/summarize.jsonl",
        options=FileOptions(task="summarize", entailment_model=str(nli_folder)),
        resources=Resources(device="cpu"),
    )


def test_summarize_reports_the_threshold_it_used(encoder: Encoder, nli_folder: Path) -> None:
    from taskloop.data.records import SummarizeExample, Where

    ex = SummarizeExample(id="s1", where=Where(file="data/summarize.jsonl", row=1), document=HEAT)
    (plain,) = summarize.run([ex], context(nli_folder))
    facts = plain.details["factuality"]
    assert facts["threshold"] == factcheck.ENTAILMENT_MIN
    assert facts["threshold_source"] == "default"
    low = facts["score"]
    assert low == min(row["entailment"] for row in plain.details["factcheck"])

    file = save(low, nli_folder)
    (tuned,) = summarize.run([ex], context(nli_folder))
    assert tuned.details["factuality"] == {
        "score": low,
        "threshold": low,
        "threshold_source": f"tuned: {file}",
    }
    assert next(c for c in tuned.checks if c.name == "entailment").passed

    save(0.5, nli_folder, score_name="another score")
    (wrong,) = summarize.run([ex], context(nli_folder))
    assert wrong.status == "skipped" and "tuned on the score 'another score'" in wrong.reason
