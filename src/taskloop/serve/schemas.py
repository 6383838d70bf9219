"""HTTP request and response bodies (separate from the stored records and the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class CheckOut(BaseModel):
    name: str
    passed: bool
    detail: str = ""
    severity: str = "error"


class TaskOut(BaseModel):
    """A verified answer: what the model said, the checks it passed or failed, its scores."""

    prediction_id: str = Field(description="quote it when rating the answer (POST /v1/feedback)")
    task: str
    output: str | None
    status: str = Field(description="ok, flagged (a check failed), failed or skipped")
    checks: list[CheckOut]
    scores: dict[str, float]
    model: str | None
    latency_ms: float


class JobOut(BaseModel):
    id: str
    status: str
    created: datetime | None = None
    finished: datetime | None = None
    error: str | None = None
    result: str | None = Field(None, description="the result blob, when done")
    summary: dict[str, Any] = Field(default_factory=dict)


class BlobIn(BaseModel):
    """A taskloop blob (or base64 of a zip) of task files."""

    blob: str = Field(min_length=1)


class BlobOut(BaseModel):
    """A small blob's result (synchronous), or the job that will hold it."""

    job: JobOut


class ModelOut(BaseModel):
    task: str
    model: str
    loaded: bool


class Problem(BaseModel):
    """Every 4xx/5xx body: a stable code, what went wrong, what to do."""

    code: str
    message: str
    hint: str | None = None


class QueueItemOut(BaseModel):
    """An input to rate on the feedback page: queued for labelling first, then recent."""

    prediction_id: str | None
    task: str
    input: dict[str, Any]
    output: str | None = None
    reason: str = ""
    queued: bool = False
    priority: float | None = Field(None, description="queued items: active learning's priority")
    other_prediction_id: str | None = Field(
        None, description="a second answer to the same input: rate A vs B"
    )
    other_output: str | None = None
