"""Typed records that flow between pipeline stages: examples in, predictions out.

Examples are validated from user rows with pydantic, so a bad row yields an error that
names the field. Each example remembers where it came from (file and row) so every
message and result can point back to it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator

TaskName = Literal["codegen", "qa", "summarize", "translate"]
TASKS: tuple[TaskName, ...] = ("codegen", "qa", "summarize", "translate")

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Where(BaseModel):
    """Where a row came from: archive member and 1-based row (line for JSONL)."""

    model_config = ConfigDict(frozen=True)

    file: str
    row: int

    def __str__(self) -> str:
        return f"{self.file}:{self.row}"


class _Example(BaseModel):
    """Fields every task row has. ``hardness`` (0-1, optional) marks a hard example, as
    ``taskloop evaluate`` writes them; the training curriculum ranks by it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: Id
    where: Where
    hardness: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("hardness", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # A CSV file with a hardness column leaves the cell empty for ordinary rows.
        return None if isinstance(value, str) and not value.strip() else value


class CodegenExample(_Example):
    """Write a function from its signature and docstring (HumanEval style).

    ``test`` (a ``check(candidate)`` function) and ``entry_point`` make it scoreable with
    pass@k; ``completion`` is a candidate body to verify instead of generating one.
    """

    task: Literal["codegen"] = "codegen"
    prompt: NonEmpty
    entry_point: str | None = None
    test: str | None = None
    completion: str | None = None
    language: Literal["python"] = "python"


class QAExample(_Example):
    """Answer a question from a context; an empty ``answers`` list with
    ``is_impossible`` true means the context holds no answer (SQuAD v2)."""

    task: Literal["qa"] = "qa"
    question: NonEmpty
    context: NonEmpty
    answers: list[str] = Field(default_factory=list)
    is_impossible: bool | None = None


class SummarizeExample(_Example):
    """Summarise a document; ``summaries`` are references for scoring."""

    task: Literal["summarize"] = "summarize"
    document: NonEmpty = Field(validation_alias=AliasChoices("document", "text", "dialogue"))
    summaries: list[str] = Field(default_factory=list)


class TranslateExample(_Example):
    """Translate ``source``; ``target`` is a reference translation for scoring."""

    task: Literal["translate"] = "translate"
    source: NonEmpty
    target: str | None = None
    source_lang: str | None = None
    target_lang: str | None = None


Example = CodegenExample | QAExample | SummarizeExample | TranslateExample
EXAMPLE_TYPES: dict[TaskName, type[_Example]] = {
    "codegen": CodegenExample,
    "qa": QAExample,
    "summarize": SummarizeExample,
    "translate": TranslateExample,
}


class RowError(BaseModel):
    """A row that could not be used: where, which field, and why."""

    file: str
    row: int | None
    field: str | None
    message: str
    code: str = "data.invalid_row"

    def __str__(self) -> str:
        at = f"{self.file}:{self.row}" if self.row is not None else self.file
        return f"{at}: {self.field + ': ' if self.field else ''}{self.message}"


class Check(BaseModel):
    """One verification of an output: what was checked, whether it held, and details.

    ``severity`` "error" makes a failed check flag the prediction; "warning" only notes.
    """

    name: str
    passed: bool
    detail: str = ""
    severity: Literal["error", "warning", "info"] = "error"


Status = Literal["ok", "flagged", "failed", "skipped"]


class Prediction(BaseModel):
    """What a task produced for one example, with its checks and per-item scores.

    status: "ok" (all error checks passed), "flagged" (an answer, but a check failed),
    "failed" (no answer: the model or sandbox failed), "skipped" (no usable model; the
    ``reason`` says what to pass).
    """

    id: str
    task: TaskName
    where: Where
    output: str | None
    status: Status
    mode: str = ""  # how the output was produced: "extractive", "abstractive", "hybrid" ...
    model: str | None = None
    checks: list[Check] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    reason: str = ""  # why failed or skipped, and what to do
    truncation: list[str] = Field(default_factory=list)  # every cut or split of the input
    details: dict[str, Any] = Field(default_factory=dict)  # task-specific, see task-format.md

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.severity == "error"]


def status_from_checks(checks: list[Check]) -> Status:
    """ "flagged" when any error-severity check failed, else "ok"."""
    return "flagged" if any(not c.passed and c.severity == "error" for c in checks) else "ok"


class TaskSummary(BaseModel):
    """Per task (and file): counts by status and aggregate metrics."""

    task: TaskName
    file: str
    model: str | None
    mode: str = ""
    counts: dict[str, int]
    metrics: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    duration_s: float = 0.0
    options: dict[str, Any] = Field(default_factory=dict)  # the file's resolved options
