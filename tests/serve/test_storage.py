"""Storage on SQLite and PostgreSQL: migrations, pragmas, and every repository function."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, exc
from sqlalchemy.orm import Session, sessionmaker

from taskloop.serve.errors import NotFoundError, ServeError, StorageError
from taskloop.serve.records import FeedbackIn, PredictionRecord
from taskloop.serve.storage import (
    current_revision,
    db,
    head_revision,
    make_engine,
    normalize_url,
    ping,
    repo,
    session_scope,
    upgrade,
)
from taskloop.serve.storage.tables import Base, FeedbackRow

QA_INPUT = {"question": "Who wrote it?", "context": "Ann wrote it."}
QA_PROMPT = "question: Who wrote it? context: Ann wrote it."  # tasks.qa.prompt_for, seq2seq


def pred(pid: str, output: str | None = "x", task: str = "qa", inp: dict | None = None, **kw):
    inp = QA_INPUT if inp is None else inp
    return PredictionRecord(
        id=pid,
        task=task,
        input_hash=repo.hash_input(inp),
        input=inp,
        output=output,
        status="ok" if output is not None else "failed",
        **kw,
    )


def fb(pid: str, kind: str, **kw) -> FeedbackIn:
    return FeedbackIn(prediction_id=pid, kind=kind, **kw)  # type: ignore[arg-type]


# --- engine, pragmas, migrations -----------------------------------------------------


def test_sqlite_pragmas(tmp_path: Path):
    """WAL journal, synchronous FULL (= 2), foreign keys on, the busy timeout, on every
    pooled connection."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'serve.db'}")  # folders made
    with engine.connect() as conn:
        got = [
            conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]
    assert got == ["wal", 2, 1, db.BUSY_TIMEOUT_MS]
    assert (tmp_path / "a" / "b" / "serve.db-wal").exists()
    engine.dispose()


def test_migrations_idempotent_and_at_head(db_url: str):
    """Before: no revision. After one or two upgrades: the only migration, 0001."""
    assert current_revision(db_url) is None
    assert upgrade(db_url) == "0001"
    assert upgrade(db_url) == "0001"
    assert current_revision(db_url) == head_revision() == "0001"


def test_migrations_match_the_tables(engine: Engine):
    """The migrated schema is exactly tables.py's: a column added to one and not the other
    shows up as a difference here."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_url_normalisation():
    assert normalize_url("postgresql://u@h/d").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/d").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    for bad in ("mysql://u@h/d", "postgresql+psycopg2://u@h/d", "not a url"):
        with pytest.raises(StorageError) as err:
            normalize_url(bad)
        assert "postgresql://" in (err.value.hint or "")


def test_unreachable_database_is_a_storage_error_without_the_password():
    url = "postgresql://user:s3cretpw@127.0.0.1:1/nothing"  # port 1: nothing listens
    for call in (lambda: upgrade(url), lambda: ping(make_engine(url))):
        with pytest.raises(StorageError) as err:
            call()
        assert "127.0.0.1:1" in str(err.value) and "s3cretpw" not in str(err.value)
        assert err.value.hint


def test_sqlite_folder_that_is_a_file(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="folder"):
        make_engine(f"sqlite:///{tmp_path / 'file' / 'serve.db'}")


def test_session_scope_rolls_back_on_error(factory: sessionmaker[Session]):
    with pytest.raises(RuntimeError), session_scope(factory) as s:
        s.add(FeedbackRow(prediction_id="p", kind="comment", rater="r", source="human"))
        raise RuntimeError("boom")
    with session_scope(factory, readonly=True) as s:
        assert repo.feedback_counts(s) == {}


def test_sqlite_writer_takes_the_lock_up_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A writing session holds the write lock from its first read (BEGIN IMMEDIATE), so a
    second writer waits (here 50 ms) and fails cleanly instead of the first failing later
    on a stale snapshot; a read-only session takes no lock and blocks no one."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    upgrade(url)
    factory = db.session_factory(make_engine(url))
    with session_scope(factory, readonly=True) as reader:
        assert repo.list_users(reader) == []
        with session_scope(factory) as writer:
            repo.create_user(writer, "ann", "h", [])
    with session_scope(factory) as first:
        assert repo.list_users(first) != []  # only a read, but the lock is taken
        with pytest.raises(StorageError, match="locked"), session_scope(factory) as second:
            repo.create_user(second, "bob", "h", [])


# --- predictions ---------------------------------------------------------------------


def test_prediction_round_trip(factory: sessionmaker[Session]):
    inp = {"question": "Wo? \u00fc \u65e5", "context": "c", "nested": {"a": [1, 2.5, None]}}
    rec = pred(
        "a" * 32,
        "Ann",
        inp=inp,
        model="m",
        model_version="3",
        checks=[{"name": "span", "passed": True}],
        scores={"f1": 0.5},
        latency_ms=12.5,
        principal="ann",
    )
    with session_scope(factory) as s:
        stored = repo.add_prediction(s, rec)
    with session_scope(factory) as s:
        got = repo.get_prediction(s, "a" * 32)
    assert got == stored
    assert got.model_dump(exclude={"created"}) == rec.model_dump(exclude={"created"})
    assert got.created is not None and got.created.utcoffset() is not None
    assert got.created.tzinfo == UTC


def test_prediction_errors(factory: sessionmaker[Session]):
    with session_scope(factory) as s:
        repo.add_prediction(s, pred("p1"))
    with pytest.raises(ServeError, match="exists"), session_scope(factory) as s:
        repo.add_prediction(s, pred("p1"))
    with pytest.raises(NotFoundError, match="'nope'"), session_scope(factory) as s:
        repo.get_prediction(s, "nope")


def test_recent_predictions(factory: sessionmaker[Session]):
    """Newest first, filtered by task, at most ``limit``."""
    t = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    with session_scope(factory) as s:
        repo.add_prediction(s, pred("old", created=t[0]))
        repo.add_prediction(s, pred("sum", task="summarize", inp={"document": "d"}, created=t[1]))
        repo.add_prediction(s, pred("new", created=t[2]))
    with session_scope(factory) as s:
        assert [p.id for p in repo.recent_predictions(s, 10)] == ["new", "sum", "old"]
        assert [p.id for p in repo.recent_predictions(s, 10, task="qa")] == ["new", "old"]
        assert [p.id for p in repo.recent_predictions(s, 1)] == ["new"]
        assert repo.recent_predictions(s, 1)[0].created == t[2]


def test_hash_input_is_canonical():
    """Key order and spacing do not change the hash; a value does."""
    assert repo.hash_input({"a": 1, "b": "\u00fc"}) == repo.hash_input({"b": "\u00fc", "a": 1})
    assert repo.hash_input({"a": 1}) != repo.hash_input({"a": 2})
    assert repo.canonical_json({"b": 1, "a": [1]}) == '{"a":[1],"b":1}'


# --- feedback ------------------------------------------------------------------------


@pytest.fixture
def rated(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with session_scope(factory) as s:
        repo.add_prediction(s, pred("p1", "Ann"))
        repo.add_prediction(s, pred("p2", "Bob"))
        repo.add_prediction(s, pred("s1", "Short.", task="summarize", inp={"document": "D."}))
    return factory


def test_feedback_round_trip_of_every_kind(rated: sessionmaker[Session]):
    items = [
        fb("p1", "thumbs", thumbs="up", comment="good"),
        fb("p1", "score", score=4, source="simulated", weight=0.5),
        fb("p2", "comment", comment="wrong person"),
        fb("p1", "preference", other_prediction_id="p2", preferred="a"),
    ]
    with session_scope(rated) as s:
        out = [repo.add_feedback(s, f, rater="ann") for f in items]
    assert [o.model_dump(exclude={"id", "rater", "created"}) for o in out] == [
        f.model_dump() for f in items
    ]
    assert {o.rater for o in out} == {"ann"}
    assert out[1].id > out[0].id and out[0].created.tzinfo == UTC
    with session_scope(rated) as s:
        stored = s.get(FeedbackRow, out[3].id)
        assert stored is not None and (stored.other_prediction_id, stored.preferred) == ("p2", "a")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (fb("p1", "thumbs"), "missing thumbs"),
        (fb("p1", "thumbs", thumbs="up", score=3), "score not allowed"),
        (fb("p1", "score"), "missing score"),
        (fb("p1", "score", score=3, preferred="a"), "preferred not allowed"),
        (fb("p1", "comment"), "missing comment"),
        (fb("p1", "comment", comment=""), "missing comment"),
        (fb("p1", "preference", preferred="a"), "missing other_prediction_id"),
        (fb("p1", "preference", other_prediction_id="p2"), "missing preferred"),
        (fb("p1", "preference", other_prediction_id="p1", preferred="a"), "two different"),
        (fb("p1", "preference", other_prediction_id="s1", preferred="a"), "one task"),
    ],
)
def test_feedback_validation(rated: sessionmaker[Session], item: FeedbackIn, message: str):
    with pytest.raises(ServeError, match=message), session_scope(rated) as s:
        repo.add_feedback(s, item, rater="ann")
    with session_scope(rated) as s:
        assert repo.feedback_counts(s) == {}  # nothing half-written


def test_feedback_for_a_missing_prediction(rated: sessionmaker[Session]):
    """Refused by the repository (404-style, naming the field) and, underneath, by the
    database's foreign keys (which SQLite enforces only with PRAGMA foreign_keys=ON)."""
    with pytest.raises(NotFoundError, match="prediction_id"), session_scope(rated) as s:
        repo.add_feedback(s, fb("ghost", "thumbs", thumbs="up"), rater="ann")
    other = fb("p1", "preference", other_prediction_id="ghost", preferred="b")
    with pytest.raises(NotFoundError, match="other_prediction_id"), session_scope(rated) as s:
        repo.add_feedback(s, other, rater="ann")
    for column in ("prediction_id", "other_prediction_id"):
        row = {"prediction_id": "p1", "other_prediction_id": None} | {column: "ghost"}
        with pytest.raises(exc.IntegrityError), session_scope(rated) as s:
            s.add(FeedbackRow(kind="comment", comment="c", rater="r", source="human", **row))
            s.flush()


def test_feedback_counts(rated: sessionmaker[Session]):
    items = [
        fb("p1", "thumbs", thumbs="up"),
        fb("p2", "thumbs", thumbs="up"),
        fb("p2", "thumbs", thumbs="down"),
        fb("p1", "score", score=5),
        fb("p1", "comment", comment="c"),
        fb("p1", "preference", other_prediction_id="p2", preferred="tie"),
    ]
    with session_scope(rated) as s:
        for f in items:
            repo.add_feedback(s, f, rater="r")
    with session_scope(rated) as s:
        assert repo.feedback_counts(s) == {
            ("thumbs", "up"): 2,
            ("thumbs", "down"): 1,
            ("score", "5"): 1,
            ("comment", ""): 1,
            ("preference", "tie"): 1,
        }


# --- export --------------------------------------------------------------------------


def test_render_prompt():
    """A valid task row gives the task model's input; anything else its canonical JSON."""
    assert repo.render_prompt("qa", QA_INPUT) == QA_PROMPT
    assert repo.render_prompt("summarize", {"document": "D."}) == "D."
    assert repo.render_prompt("qa", {"question": "q"}) == '{"question":"q"}'  # no context
    assert repo.render_prompt("poetry", {"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_export_feedback(factory: sessionmaker[Session]):
    """Crafted ratings, rows worked out by hand.

    Predictions on one QA input: p1 "Ann", p2 "Bob", p3 "Ann wrote"; s1 "Short." (a
    summary); f0 "failed" has no output. Ratings (f1..f12 in order):
      f1 thumbs up p1; f2 thumbs down p2 (simulated, weight 0.5); f3 thumbs down f0;
      f4 preference p1 vs p2 "a" -> pair Ann > Bob; f5 p1 vs p2 "tie" -> left out;
      f6 p1 vs p3 "b" -> pair "Ann wrote" > Ann (prompt from p1);
      f7 score 5 p1; f8 score 2 p2 (simulated, 0.5); f9 score 5 p3; f10 score 4 p1;
      f11 score 1 s1 (alone on its input); f12 score 3 f0 (no output).
    Score-gap pairs over f7..f10 (same input), in (i, j) order:
      f7/f8: 5-2 -> p1 > p2, margin 3, simulated (f8 is), weight min(1, .5) = .5
      f7/f9: 5 = 5 -> none;  f7/f10: both p1 -> none
      f8/f9: p3 > p2, margin 3, simulated, .5;  f8/f10: p1 > p2, margin 2, simulated, .5
      f9/f10: p3 > p1, margin 1, human, 1.0
    """
    with session_scope(factory) as s:
        for p in (pred("p1", "Ann"), pred("p2", "Bob"), pred("p3", "Ann wrote"), pred("f0", None)):
            repo.add_prediction(s, p)
        repo.add_prediction(s, pred("s1", "Short.", task="summarize", inp={"document": "D."}))
        sim = {"source": "simulated", "weight": 0.5}
        items = [
            fb("p1", "thumbs", thumbs="up"),
            fb("p2", "thumbs", thumbs="down", **sim),
            fb("f0", "thumbs", thumbs="down"),
            fb("p1", "preference", other_prediction_id="p2", preferred="a"),
            fb("p1", "preference", other_prediction_id="p2", preferred="tie"),
            fb("p1", "preference", other_prediction_id="p3", preferred="b"),
            fb("p1", "score", score=5),
            fb("p2", "score", score=2, **sim),
            fb("p3", "score", score=5),
            fb("p1", "score", score=4),
            fb("s1", "score", score=1),
            fb("f0", "score", score=3),
        ]
        f = [None] + [repo.add_feedback(s, item, rater="r").id for item in items]
    with session_scope(factory, readonly=True) as s:
        pairs, thumbs, scores = (list(repo.export_feedback(s, k)) for k in repo.EXPORT_SHAPES)

    human = {"task": "qa", "source": "human", "weight": 1.0}
    simulated = {"task": "qa", "source": "simulated", "weight": 0.5}
    assert thumbs == [
        {"prompt": QA_PROMPT, "completion": "Ann", "label": True, "feedback_id": f[1]} | human,
        {"prompt": QA_PROMPT, "completion": "Bob", "label": False, "feedback_id": f[2]} | simulated,
    ]
    one = {"prompt": QA_PROMPT}
    assert scores == [
        one | {"completion": "Ann", "score": 5, "feedback_id": f[7]} | human,
        one | {"completion": "Bob", "score": 2, "feedback_id": f[8]} | simulated,
        one | {"completion": "Ann wrote", "score": 5, "feedback_id": f[9]} | human,
        one | {"completion": "Ann", "score": 4, "feedback_id": f[10]} | human,
        {"prompt": "D.", "completion": "Short.", "score": 1, "feedback_id": f[11]}
        | human
        | {"task": "summarize"},
    ]

    def pair(chosen, rejected, fid, other, margin, base):
        origin = "preference" if margin is None else "score_gap"
        return (
            one
            | {"chosen": chosen, "rejected": rejected, "feedback_id": fid}
            | base
            | {
                "margin": margin,
                "other_feedback_id": other,
                "origin": origin,
            }
        )

    assert pairs == [
        pair("Ann", "Bob", f[4], None, None, human),
        pair("Ann wrote", "Ann", f[6], None, None, human),
        pair("Ann", "Bob", f[7], f[8], 3, simulated),
        pair("Ann wrote", "Bob", f[9], f[8], 3, simulated),
        pair("Ann", "Bob", f[10], f[8], 2, simulated),
        pair("Ann wrote", "Ann", f[9], f[10], 1, human),
    ]


def test_export_unknown_shape(factory: sessionmaker[Session]):
    with pytest.raises(ServeError, match="shape"), session_scope(factory) as s:
        list(repo.export_feedback(s, "ratings"))  # type: ignore[arg-type]


# --- users, clients ------------------------------------------------------------------


def test_users(factory: sessionmaker[Session]):
    with session_scope(factory) as s:
        ann = repo.create_user(s, "ann", "hash1", ["tasks:run", "feedback:write", "tasks:run"])
        repo.create_user(s, "al", "hash2", [])
    assert ann.scopes == ["tasks:run", "feedback:write"] and not ann.disabled
    with pytest.raises(ServeError, match="'ann' exists"), session_scope(factory) as s:
        repo.create_user(s, "ann", "h", [])
    with pytest.raises(ServeError, match="scope"), session_scope(factory) as s:
        repo.create_user(s, "bob", "h", ["tasks:run feedback:read"])
    with session_scope(factory) as s:
        assert repo.get_user(s, "ann") == (ann, "hash1")
        assert repo.get_user(s, "bob") is None
        assert [u.username for u in repo.list_users(s)] == ["al", "ann"]
        changed = repo.set_user(s, "ann", password_hash="hash3", scopes=["models:admin"])
        assert repo.set_user(s, "al", disabled=True).disabled
    assert changed.scopes == ["models:admin"]
    with session_scope(factory) as s:
        assert repo.get_user(s, "ann") == (changed, "hash3")
        repo.delete_user(s, "al")
        assert [u.username for u in repo.list_users(s)] == ["ann"]
    for call in (
        lambda s: repo.set_user(s, "al", disabled=False),
        lambda s: repo.delete_user(s, "al"),
    ):
        with pytest.raises(NotFoundError, match="'al'"), session_scope(factory) as s:
            call(s)


def test_clients(factory: sessionmaker[Session]):
    with session_scope(factory) as s:
        bot = repo.create_client(s, "bot", "sh", ["tasks:run"], rate_per_minute=30)
        repo.create_client(s, "app", "sh2", ["feedback:read"])
    assert (bot.rate_per_minute, bot.scopes) == (30, ["tasks:run"])
    with pytest.raises(ServeError, match="'bot' exists"), session_scope(factory) as s:
        repo.create_client(s, "bot", "x", [])
    with session_scope(factory) as s:
        assert repo.get_client(s, "bot") == (bot, "sh")
        assert repo.get_client(s, "nobody") is None
        assert [c.client_id for c in repo.list_clients(s)] == ["app", "bot"]
        changed = repo.set_client(s, "bot", secret_hash="sh3", rate_per_minute=5, disabled=True)
    assert (changed.rate_per_minute, changed.disabled) == (5, True)
    with session_scope(factory) as s:
        assert repo.get_client(s, "bot") == (changed, "sh3")
        repo.delete_client(s, "bot")
        assert repo.get_client(s, "bot") is None
    with pytest.raises(NotFoundError), session_scope(factory) as s:
        repo.delete_client(s, "bot")


# --- jobs, queue ---------------------------------------------------------------------


def test_jobs(factory: sessionmaker[Session]):
    with session_scope(factory) as s:
        job = repo.create_job(s, "j1", principal="ann")
    assert (job.status, job.finished, job.summary) == ("queued", None, {})
    with session_scope(factory) as s:
        running = repo.update_job(s, "j1", status="running")
        assert running.finished is None
        done = repo.update_job(s, "j1", status="done", result="BLOB", summary={"qa": {"ok": 2}})
    with session_scope(factory) as s:
        assert repo.get_job(s, "j1") == done
    assert done.finished is not None and done.finished >= done.created  # type: ignore[operator]
    assert (done.result, done.summary, done.principal) == ("BLOB", {"qa": {"ok": 2}}, "ann")
    with pytest.raises(ServeError, match="exists"), session_scope(factory) as s:
        repo.create_job(s, "j1")
    with pytest.raises(ServeError, match="status"), session_scope(factory) as s:
        repo.update_job(s, "j1", status="lost")
    with pytest.raises(NotFoundError), session_scope(factory) as s:
        repo.get_job(s, "j2")


def test_label_queue(rated: sessionmaker[Session]):
    """Highest priority first, ties oldest first; rating the item's prediction (here as
    preference answer B) or finishing it takes it off the queue."""
    with session_scope(rated) as s:
        low = repo.add_queue_item(s, task="qa", input=QA_INPUT, priority=0.1, reason="r1")
        high = repo.add_queue_item(
            s, task="qa", input=QA_INPUT, priority=0.9, reason="uncertain", prediction_id="p2"
        )
        tie = repo.add_queue_item(s, task="summarize", input={"document": "D."}, priority=0.1)
        with pytest.raises(NotFoundError):
            repo.add_queue_item(s, task="qa", input={}, prediction_id="ghost")
    with session_scope(rated) as s:
        items = repo.queue_items(s, 10)
        assert [i["id"] for i in items] == [high, low, tie]
        assert items[0] | {"created": None} == {
            "id": high,
            "prediction_id": "p2",
            "task": "qa",
            "input": QA_INPUT,
            "priority": 0.9,
            "reason": "uncertain",
            "created": None,
        }
        assert datetime.fromisoformat(items[0]["created"]).tzinfo is not None
        assert [i["id"] for i in repo.queue_items(s, 1)] == [high]
        # a simulated rating leaves the item for a person
        repo.add_feedback(s, fb("p2", "thumbs", thumbs="up", source="simulated"), "simulator")
        assert [i["id"] for i in repo.queue_items(s, 1)] == [high]
        repo.add_feedback(s, fb("p1", "preference", other_prediction_id="p2", preferred="b"), "r")
        repo.finish_queue_item(s, tie)
        assert [i["id"] for i in repo.queue_items(s, 10)] == [low]
    with pytest.raises(NotFoundError), session_scope(rated) as s:
        repo.finish_queue_item(s, 999)
