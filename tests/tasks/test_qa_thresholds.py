"""QA no-answer thresholds: a tuned ``qa.no_answer`` is read at inference (extractive
default with the real packaged MiniLM, QA head with a tiny BERT), its precedence, and
``taskloop thresholds qa`` on crafted SQuAD v2 rows and on the shared sample."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taskloop.cli import app
from taskloop.evaluate.errors import ThresholdError
from taskloop.evaluate.thresholds import (
    QA_NO_ANSWER,
    THRESHOLDS_FILE,
    decide,
    load_thresholds,
    save_thresholds,
    threshold_tuning,
    thresholds_file,
    tune_qa_no_answer,
)
from taskloop.models.encoder import MINILM_NAME, Encoder, load_encoder
from taskloop.tasks import qa
from tests.tasks.test_qa import BRIDGE, VIENNA, build_tiny_bert_qa, context_for, example

ON_TOPIC = "Which river does Vienna lie on?"
OFF_TOPIC = "What is the boiling point of mercury?"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("TASKLOOP_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return load_encoder(device="cpu")


def save_threshold(t: float, model: str | Path, score_name: str) -> Path:
    """Save qa.no_answer = t for ``model`` via a two-point max-F1 tuning: scores (t, t-1)
    with labels (1, 0) separate at exactly t."""
    th = threshold_tuning([t, t - 1], [1, 0], name=QA_NO_ANSWER, score_name=score_name)
    assert th.value == t
    return save_thresholds(th, model)


def test_extractive_default_reads_a_tuned_threshold(encoder: Encoder) -> None:
    """The on-topic question's no-answer score s is -cosine of its best sentence. A tuned
    threshold of exactly s abstains (s >= t, as in tuning), the next float above s
    answers; an explicit option still wins over the file."""
    ex = example(ON_TOPIC, VIENNA, ["Danube"])
    (plain,) = qa.run([ex], context_for())
    assert plain.output == "Danube" and plain.details["threshold_source"] == "default"
    s = plain.details["no_answer_score"]
    assert s == pytest.approx(-plain.details["similarity"], abs=1e-4) and s < 0

    file = save_threshold(s, MINILM_NAME, qa.EXTRACTIVE_NO_ANSWER_SCORE)
    assert file == thresholds_file(MINILM_NAME)
    (at,) = qa.run([ex], context_for())
    assert at.output == "" and at.details["no_answer"] is True
    assert at.details["threshold_source"] == f"tuned: {file}"
    assert at.details["no_answer_score"] == s

    save_threshold(math.nextafter(s, math.inf), MINILM_NAME, qa.EXTRACTIVE_NO_ANSWER_SCORE)
    (above,) = qa.run([ex], context_for())
    assert above.output == "Danube" and above.details["threshold_source"].startswith("tuned: ")

    save_threshold(s, MINILM_NAME, qa.EXTRACTIVE_NO_ANSWER_SCORE)
    (option,) = qa.run([ex], context_for(no_answer_threshold=-1))
    assert option.output == "Danube" and option.details["threshold_source"] == "option"
    assert option.details["threshold"] == -1


def test_a_threshold_for_another_score_skips_with_the_reason(encoder: Encoder) -> None:
    save_threshold(-0.5, MINILM_NAME, "something else")
    (pred,) = qa.run([example(ON_TOPIC, VIENNA)], context_for())
    assert pred.status == "skipped" and "tuned on the score 'something else'" in pred.reason


def test_a_corrupt_thresholds_file_skips_naming_the_file(encoder: Encoder) -> None:
    file = thresholds_file(MINILM_NAME)
    file.parent.mkdir(parents=True)
    file.write_text("{not json")
    (pred,) = qa.run([example(ON_TOPIC, VIENNA)], context_for())
    assert pred.status == "skipped" and str(file) in pred.reason


def test_best_span_with_a_tuned_null_threshold() -> None:
    """Window: best span "lies" scores 2 + 2 = 4, null (CLS) 3 + 3 = 6; null - span = 2.
    Default (null > span): no answer. Tuned 2: 2 >= 2, no answer; tuned 2.5: answer "lies";
    inf: never abstains."""
    offsets: list[tuple[int, int] | None] = [
        None, None, None, None, (0, 6), (7, 11), (12, 14), (15, 18), (19, 25), None,
    ]  # fmt: skip
    win = qa._Window(item=0, ids={}, offsets=offsets, cls=0)
    s, e = np.zeros(10), np.zeros(10)
    s[0], e[0], s[5], e[5] = 3, 3, 2, 2
    ex = example("which river", "Vienna lies on the Danube")
    windows = [(win, s, e)]
    default = qa._best_qa_span(ex, windows, 64, 16)
    assert default.no_answer and default.no_answer_score == 2.0
    at = qa._best_qa_span(ex, windows, 64, 16, 2.0)
    assert at.no_answer and "2.0000 >= tuned threshold 2.0000" in at.extra["why"]
    above = qa._best_qa_span(ex, windows, 64, 16, 2.5)
    assert (above.text, above.no_answer, above.no_answer_score) == ("lies", False, 2.0)
    assert qa._best_qa_span(ex, windows, 64, 16, math.inf).text == "lies"


@pytest.fixture(scope="module")
def tiny_qa_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [VIENNA, BRIDGE, f"{ON_TOPIC} {OFF_TOPIC}"]
    return build_tiny_bert_qa(tmp_path_factory.mktemp("tiny-bert-qa-thresholds"), texts)


def test_qa_head_reads_a_tuned_threshold_from_the_model_folder(tiny_qa_model: Path) -> None:
    """Random weights: whatever null - span score d the question gets, a tuned threshold
    of d abstains and the next float above d answers with a span of the context; the
    file lives in the model folder."""
    folder = tiny_qa_model
    ex = example(ON_TOPIC, VIENNA)
    (plain,) = qa.run([ex], context_for(model=str(folder)))
    d = plain.details["no_answer_score"]
    assert plain.details["threshold"] == 0.0 and plain.details["threshold_source"] == "default"
    assert plain.details["no_answer"] == (d > 0)
    file = save_threshold(d, folder, qa.HEAD_NO_ANSWER_SCORE)
    assert file == folder / THRESHOLDS_FILE
    try:
        (at,) = qa.run([ex], context_for(model=str(folder)))
        assert at.output == "" and at.details["threshold_source"] == f"tuned: {file}"
        assert at.details["threshold"] == d
        save_threshold(math.nextafter(d, math.inf), folder, qa.HEAD_NO_ANSWER_SCORE)
        (above,) = qa.run([ex], context_for(model=str(folder)))
        assert (
            above.output and above.output == VIENNA[above.details["start"] : above.details["end"]]
        )
    finally:
        file.unlink()


# ------------------------------------------------------------------ thresholds qa

ROWS = [
    {"id": "a1", "question": ON_TOPIC, "context": VIENNA, "answers": ["Danube"]},
    {"id": "a2", "question": "What was the Roman camp called?", "context": VIENNA,
     "answers": ["Vindobona"]},
    {"id": "a3", "question": "When was the bridge opened?", "context": BRIDGE,
     "answers": ["1932"]},
    {"id": "n1", "question": OFF_TOPIC, "context": VIENNA, "answers": [], "is_impossible": True},
    {"id": "n2", "question": "Who won the chess final in Oslo?", "context": BRIDGE,
     "answers": [], "is_impossible": True},
    {"id": "n3", "question": "How many moons does Jupiter have?", "context": VIENNA,
     "answers": [], "is_impossible": True},
]  # fmt: skip


def test_thresholds_qa_on_crafted_rows(tmp_path: Path, home: Path, encoder: Encoder) -> None:
    """Off-topic questions are far from every sentence, on-topic ones close: the scores
    (-cosine) separate, so max F1 of "no answer" is 1 at the lowest unanswerable score,
    -(highest cosine among the unanswerable); the file goes to TASKLOOP_HOME (the packaged
    encoder is not our folder), and the run after tuning answers the three and abstains on
    the others."""
    data = tmp_path / "qa_val.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    exs = qa.squad_examples(data)
    found = {p.id: p.details["no_answer_score"] for p in qa.run(exs, context_for())}
    expected = min(found["n1"], found["n2"], found["n3"])
    assert expected > max(found["a1"], found["a2"], found["a3"])  # separable

    out = CliRunner().invoke(app, ["thresholds", "qa", str(data), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    th = load_thresholds(QA_NO_ANSWER, MINILM_NAME)
    assert th is not None and th.value == expected
    assert th.score_name == qa.EXTRACTIVE_NO_ANSWER_SCORE and th.n == 6
    assert th.validation["positive"]["f1"] == 1.0
    file = home / "thresholds" / "sentence-transformers--all-MiniLM-L6-v2.json"
    assert f"saved qa.no_answer to {file}" in out.output
    assert "SQuAD v2 on 6 questions" in out.output
    preds = qa.run(exs, context_for())
    assert [p.output == "" for p in preds] == [False, False, False, True, True, True]
    assert all(p.details["threshold_source"] == f"tuned: {file}" for p in preds)


def test_thresholds_qa_errors(tmp_path: Path, tiny_qa_model: Path) -> None:
    answerable = tmp_path / "qa_only.jsonl"
    answerable.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]))
    out = CliRunner().invoke(app, ["thresholds", "qa", str(answerable), "--device", "cpu"])
    assert out.exit_code != 0 and "error[evaluate.threshold]" in out.output
    assert "both outcomes" in out.output
    with pytest.raises(ThresholdError, match="no no-answer score"):
        from taskloop.models.tiny import build_tiny_model

        t5 = build_tiny_model(tmp_path / "t5", "seq2seq")
        tune_qa_no_answer(qa.squad_examples(answerable), model=str(t5), device="cpu")


def test_thresholds_qa_with_a_qa_head(tmp_path: Path, tiny_qa_model: Path) -> None:
    """The QA-head path: the file goes into the model folder, tuned on null - span."""
    data = tmp_path / "qa_val.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    try:
        result = tune_qa_no_answer(
            qa.squad_examples(data), model=str(tiny_qa_model), rule="youden", device="cpu"
        )
        th = result.thresholds
        assert th.score_name == qa.HEAD_NO_ANSWER_SCORE and th.model == str(tiny_qa_model)
        assert result.scores.path == "qa-head" and len(result.scores.examples) == 6
        file = save_thresholds(th)
        assert file == tiny_qa_model / THRESHOLDS_FILE
        preds = qa.run(qa.squad_examples(data), context_for(model=str(tiny_qa_model)))
        abstains = [p.output == "" for p in preds]
        assert abstains == list(decide(th, result.scores.scores))
    finally:
        (tiny_qa_model / THRESHOLDS_FILE).unlink(missing_ok=True)


@pytest.mark.slow
def test_thresholds_qa_on_the_squad_v2_sample(shared_data: Path, encoder: Encoder) -> None:
    """All 626 questions of the sample (333 unanswerable), max F1 of "no answer" (about a
    minute on 2 cores).
    The default rule (abstain when cosine < 0.40) is one of the candidate cuts, so the
    tuned F1 of the no-answer class is at least the default's; always abstaining gives
    F1 2 * (333/626) / (1 + 333/626) = 0.694, also a candidate."""
    from sklearn.metrics import f1_score

    exs = qa.squad_examples(shared_data / "qa" / "squad_v2_small.json")
    result = tune_qa_no_answer(exs, device="cpu")
    found = result.scores
    assert len(found.examples) == 626 and int(found.labels.sum()) == 333
    tuned_f1 = result.thresholds.validation["positive"]["f1"]
    default_f1 = f1_score(found.labels, found.scores > found.default_cut)
    assert tuned_f1 >= default_f1 and tuned_f1 >= 0.694
    assert f1_score(found.labels, decide(result.thresholds, found.scores)) == pytest.approx(
        tuned_f1
    )
    # The figures before and after are what the QA task itself gives with each rule.
    assert qa.score(exs, qa.run(exs, context_for())) == pytest.approx(result.squad_default)
    save_thresholds(result.thresholds)
    assert qa.score(exs, qa.run(exs, context_for())) == pytest.approx(result.squad_tuned)
