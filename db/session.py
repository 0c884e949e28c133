"""Engines and sessions.  SQLite by default (a file in the working folder, WAL mode);
PostgreSQL by URL (``postgresql://user@host:port/db``, driven by psycopg 3)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.models import Base

DEFAULT_SQLITE = "sqlite:///mupnc.db"


class SchemaError(RuntimeError):
    """The database has no mupnc schema, or an out-of-date one."""


def database_url(explicit: str | None = None) -> str:
    """``--db`` if given, else ``MUPNC_DB``, else ``mupnc.db`` in the working folder."""
    return explicit or os.environ.get("MUPNC_DB") or DEFAULT_SQLITE


def redacted(url: str) -> str:
    """The URL with any password masked, for printing and logs."""
    return make_url(url).render_as_string(hide_password=True)


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
    return create_engine(parsed, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create every table that does not exist yet."""
    Base.metadata.create_all(engine)


def require_schema(engine: Engine) -> None:
    """Refuse to work on a database without the mupnc tables, with a clear message."""
    missing = set(Base.metadata.tables) - set(inspect(engine).get_table_names())
    if missing:
        raise SchemaError(
            f"database {redacted(str(engine.url))} has no mupnc schema "
            f"(missing {', '.join(sorted(missing))}); run 'mupnc db upgrade'"
        )


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work commits as one transaction, or rolls back on error."""
    with sessionmaker(engine)() as session, session.begin():
        yield session
