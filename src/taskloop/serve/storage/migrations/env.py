"""Alembic's environment. It runs inside :func:`taskloop.serve.storage.db.upgrade` (or
``command.revision`` for a new migration, see docs/storage.md), which passes an open
connection in ``config.attributes["connection"]``; there is no ``alembic.ini``."""

from __future__ import annotations

from alembic import context

from taskloop.serve.storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise SystemExit(
        "run migrations through taskloop.serve.storage.upgrade(url), see docs/storage.md"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it; batch mode does that for later migrations.
    # (A copy of a table others reference needs PRAGMA foreign_keys=OFF around it.)
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
