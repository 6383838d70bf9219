"""``taskloop users`` and ``taskloop clients``: the accounts that may call the service.

Users sign in with a password (the feedback page, people); clients with a generated
secret (the client-credentials grant, machines). Both hold scopes; the database is the
service's own, migrated to the newest schema before each command.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskloop.cliutil import EPILOG, handle_errors
from taskloop.serve.errors import ServeError
from taskloop.serve.settings import SCOPES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

users_app = typer.Typer(
    help="Users of the service: people who sign in with a password (the feedback page). "
    "Scopes: " + ", ".join(f"{s} ({d})" for s, d in SCOPES.items()) + ".",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)
clients_app = typer.Typer(
    help="OAuth2 clients of the service: machines that get tokens with a client id and a "
    "generated secret (grant_type=client_credentials).",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="The service's database. Default: $TASKLOOP_SERVE_DATABASE_URL, else "
        "sqlite:///$TASKLOOP_HOME/serve.db.",
    ),
]
Scopes = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        "-s",
        metavar="SCOPE",
        help="A scope to grant; repeat for several. One of: " + ", ".join(SCOPES) + ".",
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin (scripts) instead of prompting.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def _session(database_url: str | None) -> Iterator[Session]:
    """A session on the migrated database, committed when the block ends."""
    from taskloop.serve.settings import ServeSettings
    from taskloop.serve.storage.db import make_engine, session_factory, session_scope, upgrade

    url = database_url or ServeSettings().resolved_database_url()
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def check_name(name: str, what: str) -> str:
    """``name`` when it is a valid user name or client id.

    Raises:
        ServeError: empty, too long, or with characters outside ``A-Z a-z 0-9 _ . @ -``.
    """
    if not _NAME.match(name):
        raise ServeError(
            f"{what} {name!r} is not valid",
            hint="use 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit",
        )
    return name


def check_scopes(scopes: list[str] | None) -> list[str]:
    """The scopes, without repeats, when each one is known and there is at least one.

    Raises:
        ServeError: an unknown scope (the valid ones are listed), or none given.
    """
    valid = ", ".join(SCOPES)
    if not scopes:
        raise ServeError("give at least one --scope", hint=f"valid scopes: {valid}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ServeError(f"unknown scope(s): {', '.join(unknown)}", hint=f"valid scopes: {valid}")
    return list(dict.fromkeys(scopes))


def _read_password(from_stdin: bool) -> str:
    """A new password: the first line of stdin, or typed twice at a prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise ServeError("an empty password is refused", hint="choose a long passphrase")
    return password


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


# -- users --------------------------------------------------------------------------------


@handle_errors
def users_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The user name.")],
    scope: Scopes = None,
    password_stdin: PasswordStdin = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a user with a password (prompted twice, or --password-stdin) and scopes."""
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    check_name(name, "user name")
    scopes = check_scopes(scope)
    password = _read_password(password_stdin)
    with _session(database_url) as session:
        repo.create_user(session, name, hash_secret(password), scopes)
    typer.echo(f"added user {name} with scopes {' '.join(scopes)}")


@handle_errors
def users_list(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """List users with their scopes and state."""
    from taskloop.serve.storage import repo

    with _session(database_url) as session:
        users = repo.list_users(session)
    if as_json:
        _echo_json([u.model_dump(mode="json") for u in users])
        return
    if not users:
        typer.echo("no users (add one: taskloop users add NAME --scope feedback:write)")
        return
    for u in users:
        state = "disabled" if u.disabled else "enabled"
        typer.echo(f"{u.username}\t{state}\t{' '.join(u.scopes) or '-'}")


@handle_errors
def users_remove(
    name: Annotated[str, typer.Argument(metavar="NAME")], database_url: DatabaseUrl = None
) -> None:
    """Remove a user; its tokens stop working at once."""
    from taskloop.serve.storage import repo

    with _session(database_url) as session:
        repo.delete_user(session, name)
    typer.echo(f"removed user {name}")


@handle_errors
def users_passwd(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    password_stdin: PasswordStdin = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a user's password (tokens already issued stay valid until they expire)."""
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    password = _read_password(password_stdin)
    with _session(database_url) as session:
        repo.set_user(session, name, password_hash=hash_secret(password))
    typer.echo(f"changed the password of {name}")


@handle_errors
def users_scopes(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    scope: Scopes = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Replace a user's scopes (a scope taken away stops working at once)."""
    from taskloop.serve.storage import repo

    scopes = check_scopes(scope)
    with _session(database_url) as session:
        repo.set_user(session, name, scopes=scopes)
    typer.echo(f"user {name} now has scopes {' '.join(scopes)}")


def _set_disabled(name: str, disabled: bool, database_url: str | None) -> None:
    from taskloop.serve.storage import repo

    with _session(database_url) as session:
        repo.set_user(session, name, disabled=disabled)
    typer.echo(f"{'disabled' if disabled else 'enabled'} user {name}")


@handle_errors
def users_disable(
    name: Annotated[str, typer.Argument(metavar="NAME")], database_url: DatabaseUrl = None
) -> None:
    """Disable a user: sign-in refused, its tokens stop working at once."""
    _set_disabled(name, True, database_url)


@handle_errors
def users_enable(
    name: Annotated[str, typer.Argument(metavar="NAME")], database_url: DatabaseUrl = None
) -> None:
    """Enable a disabled user again."""
    _set_disabled(name, False, database_url)


users_app.command("add", epilog=EPILOG)(users_add)
users_app.command("list", epilog=EPILOG)(users_list)
users_app.command("remove", epilog=EPILOG)(users_remove)
users_app.command("passwd", epilog=EPILOG)(users_passwd)
users_app.command("scopes", epilog=EPILOG)(users_scopes)
users_app.command("disable", epilog=EPILOG)(users_disable)
users_app.command("enable", epilog=EPILOG)(users_enable)


# -- clients ------------------------------------------------------------------------------


@handle_errors
def clients_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The client id.")],
    scope: Scopes = None,
    rate: Annotated[
        int | None,
        typer.Option(
            "--rate",
            min=1,
            metavar="N",
            help="Requests per minute for this client (default: TASKLOOP_SERVE_RATE_PER_MINUTE).",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Add a client; prints its generated secret ONCE (only a hash is stored)."""
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo

    check_name(name, "client id")
    scopes = check_scopes(scope)
    secret = secrets.token_urlsafe(32)  # 256 random bits
    with _session(database_url) as session:
        repo.create_client(session, name, hash_secret(secret), scopes, rate_per_minute=rate)
    if as_json:
        _echo_json({"client_id": name, "client_secret": secret, "scopes": scopes})
    else:
        typer.echo(f"client_id: {name}\nclient_secret: {secret}")
    typer.echo("store the secret now: it is not shown again", err=True)


@handle_errors
def clients_list(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """List clients with their scopes, rate and state (never their secrets)."""
    from taskloop.serve.storage import repo

    with _session(database_url) as session:
        clients = repo.list_clients(session)
    if as_json:
        _echo_json([c.model_dump(mode="json") for c in clients])
        return
    if not clients:
        typer.echo("no clients (add one: taskloop clients add NAME --scope tasks:run)")
        return
    for c in clients:
        rate = f"{c.rate_per_minute}/min" if c.rate_per_minute else "default rate"
        state = "disabled" if c.disabled else "enabled"
        typer.echo(f"{c.client_id}\t{state}\t{rate}\t{' '.join(c.scopes) or '-'}")


@handle_errors
def clients_remove(
    name: Annotated[str, typer.Argument(metavar="NAME")], database_url: DatabaseUrl = None
) -> None:
    """Remove a client; its tokens stop working at once."""
    from taskloop.serve.storage import repo

    with _session(database_url) as session:
        repo.delete_client(session, name)
    typer.echo(f"removed client {name}")


def _set_client_disabled(name: str, disabled: bool, database_url: str | None) -> None:
    from taskloop.serve.storage import repo

    with _session(database_url) as session:
        repo.set_client(session, name, disabled=disabled)
    typer.echo(f"{'disabled' if disabled else 'enabled'} client {name}")


@handle_errors
def clients_disable(
    name: Annotated[str, typer.Argument(metavar="NAME")], database_url: DatabaseUrl = None
) -> None:
    """Disable a client: token requests refused, its tokens stop working at once."""
    _set_client_disabled(name, True, database_url)


@handle_errors
def clients_enable(
    name: Annotated[str, typer.Argument(metavar="NAME")], database_url: DatabaseUrl = None
) -> None:
    """Enable a disabled client again."""
    _set_client_disabled(name, False, database_url)


clients_app.command("add", epilog=EPILOG)(clients_add)
clients_app.command("list", epilog=EPILOG)(clients_list)
clients_app.command("remove", epilog=EPILOG)(clients_remove)
clients_app.command("disable", epilog=EPILOG)(clients_disable)
clients_app.command("enable", epilog=EPILOG)(clients_enable)
