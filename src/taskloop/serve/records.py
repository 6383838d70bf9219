"""Typed records between the service's routers and its storage (not the HTTP schemas, not
the ORM tables): what is stored and read back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FeedbackKind = Literal["thumbs", "score", "comment", "preference"]


class PredictionRecord(BaseModel):
    """One served prediction, as stored: what came in (hashed and kept), what went out."""

    model_config = ConfigDict(frozen=True)

    id: str  # uuid4 hex
    task: str
    model: str | None = None
    model_version: str | None = None
    input_hash: str  # sha256 hex of the canonical JSON input
    input: dict[str, Any]
    output: str | None = None
    status: str  # ok / flagged / failed / skipped (the task's verification result)
    checks: list[dict[str, Any]] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    latency_ms: float = 0.0
    principal: str = ""  # the user or client that asked
    created: datetime | None = None


class FeedbackIn(BaseModel):
    """A rating, always tied to a stored prediction.

    kind "thumbs": ``thumbs`` up/down; "score": ``score`` 1-5; "comment": ``comment`` only;
    "preference": ``prediction_id`` is answer A, ``other_prediction_id`` answer B, and
    ``preferred`` says which is better ("a", "b" or "tie"). Any kind may carry a comment.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prediction_id: str
    kind: FeedbackKind
    thumbs: Literal["up", "down"] | None = None
    score: int | None = Field(None, ge=1, le=5)
    comment: str | None = Field(None, max_length=4000)
    other_prediction_id: str | None = None
    preferred: Literal["a", "b", "tie"] | None = None
    source: Literal["human", "simulated"] = "human"
    weight: float = Field(1.0, ge=0.0, le=100.0)


class FeedbackRecord(FeedbackIn):
    """A stored rating: who gave it and when."""

    id: int
    rater: str
    created: datetime


class UserRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    username: str
    scopes: list[str]
    disabled: bool = False
    created: datetime | None = None


class ClientRecord(BaseModel):
    """An OAuth2 client (client-credentials flow): a machine caller."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    scopes: list[str]
    rate_per_minute: int | None = None  # None: the service default
    disabled: bool = False
    created: datetime | None = None


JobStatus = Literal["queued", "running", "done", "failed"]


class JobRecord(BaseModel):
    """A background job (a large blob): its state and, when done, its result blob."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: JobStatus
    principal: str = ""
    created: datetime | None = None
    finished: datetime | None = None
    error: str | None = None
    result: str | None = None  # the result blob (ASCII) when done
    summary: dict[str, Any] = Field(default_factory=dict)  # counts per task/status
