"""Typed task records: validation names the field, aliases, checks and statuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from taskloop.data.records import (
    EXAMPLE_TYPES,
    TASKS,
    Check,
    CodegenExample,
    Prediction,
    QAExample,
    RowError,
    SummarizeExample,
    TranslateExample,
    Where,
    status_from_checks,
)

WHERE = Where(file="data/qa.jsonl", row=7)


def test_where_prints_file_and_row() -> None:
    assert str(WHERE) == "data/qa.jsonl:7"


def test_every_task_has_an_example_type() -> None:
    assert set(EXAMPLE_TYPES) == set(TASKS)
    for task, cls in EXAMPLE_TYPES.items():
        assert cls.model_fields["task"].default == task


def test_qa_example_defaults_and_extra_fields() -> None:
    ex = QAExample.model_validate(
        {"id": "q1", "where": WHERE, "question": "Who?", "context": "Ann.", "topic": "x"}
    )
    assert ex.answers == [] and ex.is_impossible is None
    assert not hasattr(ex, "topic")  # unknown fields are ignored
    with pytest.raises(ValidationError):
        ex.id = "other"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize("missing", ["question", "context"])
def test_qa_example_names_the_missing_field(missing: str) -> None:
    row = {"id": "q1", "where": WHERE, "question": "Who?", "context": "Ann."}
    del row[missing]
    with pytest.raises(ValidationError) as err:
        QAExample.model_validate(row)
    assert err.value.errors()[0]["loc"] == (missing,)


def test_empty_strings_and_overlong_ids_are_refused() -> None:
    with pytest.raises(ValidationError) as err:
        QAExample.model_validate({"id": "q", "where": WHERE, "question": "", "context": "c"})
    assert err.value.errors()[0]["loc"] == ("question",)
    with pytest.raises(ValidationError) as err:
        QAExample.model_validate({"id": "x" * 201, "where": WHERE, "question": "q", "context": "c"})
    assert err.value.errors()[0]["loc"] == ("id",)


@pytest.mark.parametrize("alias", ["document", "text", "dialogue"])
def test_summarize_document_aliases(alias: str) -> None:
    ex = SummarizeExample.model_validate({"id": "s", "where": WHERE, alias: "Doc."})
    assert ex.document == "Doc." and ex.summaries == []


def test_translate_and_codegen_examples() -> None:
    tr = TranslateExample.model_validate({"id": "t", "where": WHERE, "source": "Hello"})
    assert tr.target is None and tr.task == "translate"
    code = CodegenExample.model_validate({"id": "c", "where": WHERE, "prompt": "def f():"})
    assert code.language == "python" and code.test is None
    with pytest.raises(ValidationError):
        CodegenExample.model_validate(
            {"id": "c", "where": WHERE, "prompt": "fn f()", "language": "rust"}
        )


def test_row_error_text() -> None:
    full = RowError(file="a.jsonl", row=3, field="question", message="required")
    assert str(full) == "a.jsonl:3: question: required"
    assert str(RowError(file="a.jsonl", row=None, field=None, message="not UTF-8")) == (
        "a.jsonl: not UTF-8"
    )
    assert full.code == "data.invalid_row"


def test_status_from_checks() -> None:
    """Only a failed error-severity check flags; failed warnings and infos do not."""
    ok = Check(name="a", passed=True)
    warn = Check(name="b", passed=False, severity="warning")
    info = Check(name="c", passed=False, severity="info")
    error = Check(name="d", passed=False, detail="number 12 not in source")
    assert status_from_checks([]) == "ok"
    assert status_from_checks([ok, warn, info]) == "ok"
    assert status_from_checks([ok, warn, error]) == "flagged"
    pred = Prediction(
        id="x", task="qa", where=WHERE, output="y", status="flagged", checks=[ok, warn, error]
    )
    assert pred.failed_checks() == [error]
    assert pred.truncation == [] and pred.details == {}
