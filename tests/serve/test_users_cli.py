"""``taskloop users`` / ``taskloop clients`` round trips on a SQLite database in tmp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from taskloop.serve.auth import verify_secret
from taskloop.serve.settings import SCOPES
from taskloop.serve.storage import repo
from taskloop.serve.storage.db import make_engine, session_factory, session_scope, upgrade
from taskloop.serve.users_cli import clients_app, users_app

runner = CliRunner()
app = typer.Typer()
app.add_typer(users_app, name="users")
app.add_typer(clients_app, name="clients")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'serve.db'}"


def _run(url: str, *args: str, input: str | None = None) -> object:
    return runner.invoke(app, [*args, "--database-url", url], input=input)


def _user(url: str, name: str) -> tuple[object, str] | None:
    upgrade(url)  # a command refused early has not created the database
    engine = make_engine(url)
    try:
        with session_scope(session_factory(engine)) as s:
            return repo.get_user(s, name)
    finally:
        engine.dispose()


def _client(url: str, name: str) -> tuple[object, str] | None:
    engine = make_engine(url)
    try:
        with session_scope(session_factory(engine)) as s:
            return repo.get_client(s, name)
    finally:
        engine.dispose()


def test_users_round_trip(url: str) -> None:
    r = _run(
        url, "users", "add", "alice", "--scope", "tasks:run", "-s", "feedback:write",
        "--password-stdin", input="first pass\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "added user alice with scopes tasks:run feedback:write" in r.stdout
    found = _user(url, "alice")
    assert found is not None
    record, hashed = found
    assert record.scopes == ["tasks:run", "feedback:write"]  # type: ignore[attr-defined]
    assert verify_secret("first pass", hashed) and "first pass" not in hashed

    listed = _run(url, "users", "list", "--json")
    assert [(u["username"], u["disabled"]) for u in json.loads(listed.stdout)] == [("alice", False)]
    assert "alice\tenabled\ttasks:run feedback:write" in _run(url, "users", "list").stdout

    assert (
        _run(url, "users", "passwd", "alice", "--password-stdin", input="second\n").exit_code == 0
    )
    hashed = _user(url, "alice")[1]  # type: ignore[index]
    assert verify_secret("second", hashed) and not verify_secret("first pass", hashed)

    r = _run(url, "users", "scopes", "alice", "--scope", "feedback:read")
    assert r.exit_code == 0, r.output
    assert _user(url, "alice")[0].scopes == ["feedback:read"]  # type: ignore[index]

    assert _run(url, "users", "disable", "alice").exit_code == 0
    assert _user(url, "alice")[0].disabled is True  # type: ignore[index]
    assert "alice\tdisabled" in _run(url, "users", "list").stdout
    assert _run(url, "users", "enable", "alice").exit_code == 0
    assert _user(url, "alice")[0].disabled is False  # type: ignore[index]

    assert _run(url, "users", "remove", "alice").exit_code == 0
    assert _user(url, "alice") is None
    assert "no users" in _run(url, "users", "list").stdout


def test_interactive_password_asked_twice(url: str) -> None:
    """A mismatch asks again; the pair that matches is stored."""
    r = _run(url, "users", "add", "bob", "-s", "tasks:run", input="one\ntwo\nsame\nsame\n")
    assert r.exit_code == 0, r.output
    assert "do not match" in r.output
    assert verify_secret("same", _user(url, "bob")[1])  # type: ignore[index]


def test_empty_password_refused(url: str) -> None:
    r = _run(url, "users", "add", "bob", "-s", "tasks:run", "--password-stdin", input="\n")
    assert r.exit_code == 2
    assert "empty password" in r.stderr
    assert _user(url, "bob") is None


def test_unknown_scope_lists_the_valid_ones(url: str) -> None:
    r = _run(url, "users", "add", "bob", "-s", "tasks:fly", "--password-stdin", input="pw\n")
    assert r.exit_code == 2
    assert "unknown scope(s): tasks:fly" in r.stderr
    for scope in SCOPES:
        assert scope in r.stderr
    r = _run(url, "clients", "add", "etl", "-s", "admin")
    assert r.exit_code == 2 and "valid scopes" in r.stderr


def test_a_scope_is_required(url: str) -> None:
    r = _run(url, "users", "add", "bob", "--password-stdin", input="pw\n")
    assert r.exit_code == 2
    assert "at least one --scope" in r.stderr


@pytest.mark.parametrize("name", ["", "_under", "with space", "x" * 65, "a/b"])
def test_bad_names_refused(url: str, name: str) -> None:
    r = _run(url, "users", "add", name, "-s", "tasks:run", "--password-stdin", input="pw\n")
    assert r.exit_code == 2
    assert "not valid" in r.stderr


def test_duplicate_and_missing_users(url: str) -> None:
    args = ("users", "add", "bob", "-s", "tasks:run", "--password-stdin")
    assert _run(url, *args, input="pw\n").exit_code == 0
    r = _run(url, *args, input="pw\n")
    assert r.exit_code == 2
    assert "exists" in r.stderr
    for command in (
        ("remove", "ghost"),
        ("disable", "ghost"),
        ("scopes", "ghost", "-s", "tasks:run"),
    ):
        r = _run(url, "users", *command)
        assert r.exit_code != 0
        assert "ghost" in r.stderr


def test_clients_round_trip(url: str) -> None:
    """The secret is printed once, stored only as a hash, never listed."""
    r = _run(url, "clients", "add", "etl", "-s", "tasks:run", "--rate", "30")
    assert r.exit_code == 0, r.output
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert lines["client_id"] == "etl"
    secret = lines["client_secret"]
    assert len(secret) >= 40  # 32 random bytes, base64url
    assert "not shown again" in r.stderr
    found = _client(url, "etl")
    assert found is not None
    record, hashed = found
    assert record.rate_per_minute == 30  # type: ignore[attr-defined]
    assert verify_secret(secret, hashed) and secret not in hashed

    listed = _run(url, "clients", "list")
    assert "etl\tenabled\t30/min\ttasks:run" in listed.stdout
    assert secret not in listed.stdout
    as_json = json.loads(_run(url, "clients", "list", "--json").stdout)
    assert as_json[0]["client_id"] == "etl" and secret not in json.dumps(as_json)

    other = _run(url, "clients", "add", "bot", "-s", "feedback:write", "--json")
    data = json.loads(other.stdout)
    assert data["client_id"] == "bot" and data["client_secret"] != secret

    assert _run(url, "clients", "disable", "etl").exit_code == 0
    assert _client(url, "etl")[0].disabled is True  # type: ignore[index]
    assert _run(url, "clients", "enable", "etl").exit_code == 0
    assert _run(url, "clients", "remove", "etl").exit_code == 0
    assert _client(url, "etl") is None
    assert _run(url, "clients", "remove", "etl").exit_code != 0


def test_default_database_is_under_taskloop_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --database-url: $TASKLOOP_SERVE_DATABASE_URL, else $TASKLOOP_HOME/serve.db."""
    home = tmp_path / "home"
    monkeypatch.setenv("TASKLOOP_HOME", str(home))
    r = runner.invoke(app, ["clients", "add", "etl", "-s", "tasks:run"])
    assert r.exit_code == 0, r.output
    assert _client(f"sqlite:///{home / 'serve.db'}", "etl") is not None
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("TASKLOOP_SERVE_DATABASE_URL", f"sqlite:///{env_db}")
    assert runner.invoke(app, ["clients", "add", "bot", "-s", "tasks:run"]).exit_code == 0
    assert _client(f"sqlite:///{env_db}", "bot") is not None
