"""Schema migrations (Alembic, configured in code; the scripts live in ``db/migrations``).

``upgrade`` brings any database to the newest revision: a fresh one is created, one made
before migrations existed (foundation tables, no ``alembic_version``) is adopted as
revision ``0001`` and migrated from there.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

SCRIPTS = Path(__file__).with_name("migrations")
FOUNDATION = "0001"
"""The schema every database had before migrations were introduced."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest revision this version of mupnc knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions())


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: not under migration control)."""
    return MigrationContext.configure(connection).get_current_revision()


def has_tables(connection: Connection) -> bool:
    return "runs" in inspect(connection).get_table_names()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest), in one transaction."""
    with engine.begin() as connection:
        config = _config(connection)
        if current_revision(connection) is None and has_tables(connection):
            command.stamp(config, FOUNDATION)
        command.upgrade(config, revision)
