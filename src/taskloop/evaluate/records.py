"""Typed records of evaluation: the items scored, metric values with intervals, reports.

Scale: every metric in an evaluation report is on 0-100 ("points"), as sacrebleu and
the SQuAD script print them; ROUGE, METEOR, F1, pass@k and the reference-free signals
(cosines, shares) are multiplied by 100. TER is the one metric where lower is better
(``higher_is_better`` says so).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskloop.data.records import TaskName


class EvalItem(BaseModel):
    """One prediction to score, with everything the metrics need.

    Attributes:
        task: which task produced it.
        id: the example id; ``file`` + ``id`` is unique within an evaluation.
        file: the task file (or results file) it came from.
        prediction: the model output ("" = no answer / nothing produced).
        references: translate: the target; summarize: the summaries; qa: the answers
            (empty with ``answerable`` False = no answer is right); codegen: empty.
        source: the input: translate source, summarize document, qa context, codegen prompt.
        question: qa only.
        source_lang / target_lang: translate, when known.
        status: the run's status of the prediction (ok/flagged/failed/skipped).
        model: the model that produced it.
        failed_checks: names of the run's error-severity checks that failed
            (``glossary_terms``, ``language``, ``tests``, ``factcheck``...).
        answerable: qa: whether the question has an answer (None: unknown/not qa).
        samples / correct: codegen: samples drawn and samples passing the reference tests.
        details: the prediction's task details from ``taskloop run`` (may be empty).
    """

    model_config = ConfigDict(frozen=True)

    task: TaskName
    id: str
    file: str = ""
    prediction: str = ""
    references: tuple[str, ...] = ()
    source: str = ""
    question: str = ""
    source_lang: str | None = None
    target_lang: str | None = None
    status: str = "ok"
    model: str | None = None
    failed_checks: tuple[str, ...] = ()
    answerable: bool | None = None
    samples: int | None = None
    correct: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.file, self.id)


class MetricValue(BaseModel):
    """A corpus-level metric with its bootstrap interval.

    ``low``/``high`` bound the ``confidence`` interval (None: not computed, e.g. n < 2);
    ``signature`` is sacrebleu's (so others can reproduce the number); ``note`` says how
    it was computed when that matters (METEOR without WordNet, NLI model used ...).
    """

    name: str
    value: float
    low: float | None = None
    high: float | None = None
    confidence: float = 0.95
    n: int = 0
    higher_is_better: bool = True
    signature: str | None = None
    note: str = ""
    group: str = "reference"  # "reference", "quality" (reference-free), "classification"


class ItemScore(BaseModel):
    """Per-example metric values (0-100) and the error types found for it."""

    item: EvalItem
    scores: dict[str, float] = Field(default_factory=dict)
    primary: float | None = None  # the task's primary per-example score, 0-100
    errors: list[str] = Field(default_factory=list)  # error types, see analysis.ERROR_TYPES


class Comparison(BaseModel):
    """Version A vs version B on one task and metric, over the same items (paired)."""

    task: TaskName
    metric: str
    a: float
    b: float
    delta: float  # b - a (positive = B better when higher_is_better)
    low: float | None = None  # bootstrap interval of delta
    high: float | None = None
    p_value: float  # paired bootstrap: share of resamples where B is not better than A
    significant: bool
    n: int
    higher_is_better: bool = True


class TaskEval(BaseModel):
    """Everything measured for one task."""

    task: TaskName
    n: int
    primary: str  # name of the primary metric (in ``metrics``)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    classification: dict[str, Any] = Field(default_factory=dict)  # per-class P/R/F1, confusion
    items: list[ItemScore] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ErrorGroup(BaseModel):
    """Wrong or low-scoring predictions that share a task and a grouping value."""

    task: TaskName
    by: str  # "error", "length", "language"
    value: str  # the error type, the length bucket ("<=12 words"), the language pair
    count: int
    share: float  # of the task's items, 0-1
    mean_score: float | None = None  # mean primary score of the group, 0-100
    worst: list[ItemScore] = Field(default_factory=list)


class ErrorAnalysis(BaseModel):
    """Error groups, the threshold that made an item "low-scoring", and hard examples."""

    low_score: dict[str, float]  # per task: primary score (0-100) below which it is low
    groups: list[ErrorGroup] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)  # error type -> items
    hard_examples: str | None = None  # path of the written hard-examples JSONL
    hard_count: int = 0
    hard_skipped: dict[str, int] = Field(default_factory=dict)  # reason -> items not written


class EvalReport(BaseModel):
    """What ``report.json`` of ``taskloop evaluate`` holds."""

    taskloop_version: str
    created: str
    label: str  # version A's name (model or results path)
    inputs: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)  # the resolved evaluate options
    tasks: list[TaskEval] = Field(default_factory=list)
    compare_label: str | None = None
    compare_tasks: list[TaskEval] = Field(default_factory=list)  # version B's numbers
    comparisons: list[Comparison] = Field(default_factory=list)
    analysis: ErrorAnalysis | None = None
    notes: list[str] = Field(default_factory=list)
    duration_s: float = 0.0
    outputs: dict[str, str] = Field(default_factory=dict)
