"""Engines and sessions.  SQLite by default (a file in the working folder, WAL mode);
PostgreSQL by URL (``postgresql://user@host:port/db``, driven by psycopg 3)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mupnc.db import migrate

DEFAULT_SQLITE = "sqlite:///mupnc.db"


class SchemaError(RuntimeError):
    """The database has no mupnc schema, or an out-of-date one."""


class DatabaseURLError(ValueError):
    """A database URL mupnc cannot use; the message shows it with the password masked."""


BACKENDS = ("sqlite", "postgresql")
_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")


def database_url(explicit: str | None = None) -> str:
    """``--db`` if given, else ``MUPNC_DB``, else ``mupnc.db`` in the working folder."""
    return explicit or os.environ.get("MUPNC_DB") or DEFAULT_SQLITE


def redacted(url: str) -> str:
    """The URL with any password masked (``***``), for printing and logs; a URL that does
    not even parse is masked by pattern."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***@", url)


def checked_url(url: str) -> str:
    """``url`` if it names a database mupnc can use (SQLite or PostgreSQL), else
    :class:`DatabaseURLError`."""
    expected = "expected sqlite:///FILE or postgresql://USER@HOST[:PORT]/DB"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseURLError(f"not a database URL: {redacted(url)!r} ({expected})") from None
    backend = "postgresql" if parsed.drivername == "postgres" else parsed.get_backend_name()
    if backend not in BACKENDS:
        raise DatabaseURLError(
            f"unsupported database {parsed.get_backend_name()!r} in {redacted(url)} ({expected})"
        )
    return url


def missing_sqlite_file(url: str) -> Path | None:
    """The absolute path of the SQLite file ``url`` names if it does not exist (None for an
    existing file, an in-memory database or another backend)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser().resolve()
    return None if path.exists() else path


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(
        parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT}
    )


CONNECT_TIMEOUT = 10
"""Seconds to wait for a PostgreSQL server before giving up on a connection attempt."""

UNREACHABLE = (OperationalError, InterfaceError)
"""Errors meaning the database could not be reached (worth buffering and retrying)."""


def unreachable_message(engine: Engine, err: DBAPIError) -> str:
    """One line saying which database could not be reached and why."""
    reason = str(err.orig).strip().splitlines()[0] if err.orig else type(err).__name__
    return f"cannot reach database {redacted(str(engine.url))}: {reason}"


def create_schema(engine: Engine) -> None:
    """Create the schema, or migrate it to the newest revision (``mupnc db upgrade``)."""
    try:
        migrate.upgrade(engine)
    except UNREACHABLE as err:
        raise ConnectionError(unreachable_message(engine, err)) from None


def ensure_schema(engine: Engine) -> None:
    """Create the schema in a database that has none; any other must be current."""
    try:
        with engine.connect() as connection:
            fresh = migrate.current_revision(connection) is None
            fresh = fresh and not migrate.has_tables(connection)
    except UNREACHABLE as err:
        raise ConnectionError(unreachable_message(engine, err)) from None
    if fresh:
        create_schema(engine)
    else:
        require_schema(engine)


def require_schema(engine: Engine) -> None:
    """Refuse a database whose schema is missing or not at this mupnc's revision.

    Raises :class:`SchemaError` (one line, with the remedy) or ``ConnectionError``.  A
    SQLite file that does not exist is refused by its absolute path, not created empty
    (a mistyped path; the commands that make databases call :func:`ensure_schema`).
    """
    missing = missing_sqlite_file(str(engine.url))
    if missing is not None:
        raise SchemaError(f"no database at {missing} (mistyped? 'mupnc db upgrade' creates one)")
    try:
        with engine.connect() as connection:
            current = migrate.current_revision(connection)
            legacy = current is None and migrate.has_tables(connection)
    except UNREACHABLE as err:
        raise ConnectionError(unreachable_message(engine, err)) from None
    head, where = migrate.head_revision(), f"database {redacted(str(engine.url))}"
    if current == head:
        return
    if current is None:
        state = "has a schema from before migrations" if legacy else "has no mupnc schema"
        raise SchemaError(f"{where} {state}; run 'mupnc db upgrade'")
    if current not in migrate.known_revisions():
        raise SchemaError(
            f"{where} is at schema revision {current}, newer than this mupnc knows "
            f"({head}); use a newer mupnc"
        )
    raise SchemaError(
        f"{where} is at schema revision {current}, out of date (newest {head}); "
        "run 'mupnc db upgrade'"
    )


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits as one transaction, or rolls back on error."""
    with sessionmaker(engine)() as session, session.begin():
        yield session
