"""The service's tables (SQLAlchemy 2 typed declarative). Storage models only: the
routers speak :mod:`taskloop.serve.records`, :mod:`taskloop.serve.storage.repo` converts.

Datetimes are timezone-aware UTC on both backends (SQLite keeps no zone, so
:class:`UTCDateTime` puts it back). JSON columns use ``sqlalchemy.JSON`` (``json`` on
PostgreSQL, text on SQLite). A change here needs a new migration under ``migrations/``;
``tests/serve/test_storage.py`` fails when the two differ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations can drop or alter them on both backends.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (naive values are refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[dict[str, Any]]: JSON(),
        str: Text(),
    }


class UserRow(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(150), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(default="")  # space separated, as OAuth2 writes them
    disabled: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ClientRow(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(150), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(default="")
    rate_per_minute: Mapped[int | None] = mapped_column(Integer)
    disabled: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class PredictionRow(Base):
    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    task: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(500))
    model_version: Mapped[str | None] = mapped_column(String(100))
    input_hash: Mapped[str] = mapped_column(String(64), index=True)
    input: Mapped[dict[str, Any]]
    output: Mapped[str | None]
    status: Mapped[str] = mapped_column(String(16))
    checks: Mapped[list[dict[str, Any]]]
    scores: Mapped[dict[str, Any]]
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    principal: Mapped[str] = mapped_column(String(150), default="")
    created: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint("kind IN ('thumbs', 'score', 'comment', 'preference')", name="kind"),
        CheckConstraint("score IS NULL OR (score >= 1 AND score <= 5)", name="score"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    thumbs: Mapped[str | None] = mapped_column(String(4))
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None]
    other_prediction_id: Mapped[str | None] = mapped_column(ForeignKey("predictions.id"))
    preferred: Mapped[str | None] = mapped_column(String(4))
    source: Mapped[str] = mapped_column(String(16), default="human")
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    rater: Mapped[str] = mapped_column(String(150))
    created: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    principal: Mapped[str] = mapped_column(String(150), default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    finished: Mapped[datetime | None]
    error: Mapped[str | None]
    result: Mapped[str | None]  # the result blob (ASCII), possibly megabytes
    summary: Mapped[dict[str, Any]]


class QueueRow(Base):
    """An input waiting for a person's rating (filled by active learning), best first."""

    __tablename__ = "label_queue"
    __table_args__ = (Index("ix_label_queue_done_priority", "done", "priority"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str | None] = mapped_column(ForeignKey("predictions.id"))
    task: Mapped[str] = mapped_column(String(32))
    input: Mapped[dict[str, Any]]
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    done: Mapped[bool] = mapped_column(default=False)
