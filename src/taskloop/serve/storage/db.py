"""Engines, sessions and migrations: SQLite (WAL) embedded, PostgreSQL for several instances.

SQLite is tuned for a service that acknowledges writes: WAL (readers never block the
writer), ``synchronous=FULL``, foreign keys on, a busy timeout, and every transaction
opened with ``BEGIN IMMEDIATE`` unless a session says it only reads (see
:func:`session_scope`). PostgreSQL goes through psycopg 3. The schema is Alembic's,
migrated to head with :func:`upgrade` (no ``alembic.ini`` needed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from taskloop.serve.errors import ServeError, StorageError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 5000  # how long a SQLite writer waits for another's lock before failing
# Any fixed 64-bit key: replicas that start together migrate one after the other.
_PG_MIGRATION_LOCK = 0x7461736B6C6F6F70
_READONLY = "taskloop_readonly"  # execution option: a SQLite session that only reads
_URL_HINT = (
    "use sqlite:///PATH (embedded) or postgresql://USER:PASSWORD@HOST:PORT/DB "
    "(env TASKLOOP_SERVE_DATABASE_URL)"
)

log = logging.getLogger(__name__)


def normalize_url(url: str | URL) -> URL:
    """The URL with PostgreSQL's driver made psycopg 3 (``postgresql://`` is accepted).

    Raises:
        StorageError: not a database URL, or a backend other than SQLite or PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise StorageError(f"bad database URL {url!r}: {e}", hint=_URL_HINT) from e
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed
    raise StorageError(
        f"unsupported database URL {parsed.render_as_string()!r}: "
        "only SQLite and PostgreSQL (psycopg 3) are supported",
        hint=_URL_HINT,
    )


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``; connects lazily (see :func:`ping`).

    Raises:
        StorageError: a bad or unsupported URL.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:" and "mode=memory" not in str(parsed):
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot create the SQLite database's folder {folder}: {e}", hint=_URL_HINT
            ) from e
    engine = create_engine(parsed, pool_pre_ping=True, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL, not NORMAL: in WAL mode NORMAL already survives a killed *process* (the commit
    # is in the OS's page cache), but a power cut or kernel crash can lose the last
    # commits. A rating the API has answered 201 for must survive both, and one fsync
    # per commit is cheap next to a model call.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that reads, then writes, fails at once with "database is
    # locked" when another connection wrote in between (WAL snapshot too old; the busy
    # timeout does not apply). IMMEDIATE takes the write lock up front, so concurrent
    # writers queue on the busy timeout instead (as Django's and Rails' SQLite do).
    readonly = conn.get_execution_options().get(_READONLY, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def ping(engine: Engine) -> None:
    """Check that the database answers (for readiness probes).

    Raises:
        StorageError: it cannot be reached.
    """
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except exc.SQLAlchemyError as e:
        raise _unreachable(engine.url, e) from e


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; records are built before commit, so no expiry needed."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session], *, readonly: bool = False) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back when it raises.

    On SQLite a writing session holds the database's write lock from its first statement
    to its end, so keep sessions short and never nest two in one thread (the inner one
    would wait for the outer). ``readonly=True`` opens a plain deferred transaction that
    takes no lock (for listings and exports; a write in it may fail under concurrency).

    Raises:
        StorageError: the database failed or could not be reached (other errors pass).
    """
    session = factory()
    try:
        if readonly:
            session.connection(execution_options={_READONLY: True})
        yield session
        session.commit()
    except ServeError:
        session.rollback()
        raise
    except (exc.OperationalError, exc.InterfaceError) as e:
        session.rollback()
        raise _unreachable(session.get_bind().engine.url, e) from e
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _unreachable(url: URL, error: Exception) -> StorageError:
    where = url.render_as_string(hide_password=True)
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return StorageError(
        f"database {where} failed: {detail}",
        hint="check that the server is up and the URL, user and password are right; "
        "a SQLite file needs a writable folder. " + _URL_HINT,
    )


def alembic_config(connection: Connection | None) -> Any:
    """Alembic's config for taskloop's migrations, running on ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.script import ScriptDirectory

    cfg = alembic_config(None)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StorageError(f"no migrations under {MIGRATIONS}", hint="reinstall taskloop")
    return head


def upgrade(url: str | URL) -> str:
    """Migrate the database at ``url`` to the newest schema; a no-op when it is there.

    Returns:
        The revision the database is at afterwards.

    Raises:
        StorageError: the database cannot be reached or a migration failed.
    """
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several replicas may start at once; DDL is transactional here, so the
                # second waits, then finds the schema at head and does nothing.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), "head")
        return current_revision(engine.url) or ""
    except exc.SQLAlchemyError as e:
        raise _unreachable(engine.url, e) from e
    finally:
        engine.dispose()


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at (None before the first migration).

    Raises:
        StorageError: the database cannot be reached.
    """
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except exc.SQLAlchemyError as e:
        raise _unreachable(engine.url, e) from e
    finally:
        engine.dispose()
