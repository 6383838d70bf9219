"""Durable storage of the service: SQLite (WAL) embedded by default, PostgreSQL for
several instances; SQLAlchemy 2 tables, Alembic migrations, plain repository functions.

Start-up: ``upgrade(url)`` once, then ``make_engine(url)`` and ``session_factory``; each
request works in a short ``with session_scope(factory) as s:`` calling :mod:`.repo`.
See docs/storage.md.
"""

from taskloop.serve.storage.db import (
    current_revision,
    head_revision,
    make_engine,
    normalize_url,
    ping,
    session_factory,
    session_scope,
    upgrade,
)

__all__ = [
    "current_revision",
    "head_revision",
    "make_engine",
    "normalize_url",
    "ping",
    "session_factory",
    "session_scope",
    "upgrade",
]
