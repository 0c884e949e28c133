"""Migrations: the migrated schema is the models' schema; old or missing schemas are refused
until `mupnc db upgrade`; a database from before migrations is adopted."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from support.cli import mupnc

from mupnc.db import migrate
from mupnc.db.models import Base
from mupnc.db.session import SchemaError, create_schema, make_engine, require_schema


@pytest.fixture
def engine(db_url):
    """An engine on the empty database (the shared fixture's has the schema already)."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_migrations_build_exactly_the_models_schema(engine):
    create_schema(engine)
    with engine.connect() as connection:
        assert migrate.current_revision(connection) == migrate.head_revision()
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    require_schema(engine)


def test_an_old_schema_is_refused_until_upgraded(engine, db_url):
    migrate.upgrade(engine, migrate.FOUNDATION)
    with pytest.raises(SchemaError, match=r"revision 0001, out of date .*run 'mupnc db upgrade'"):
        require_schema(engine)
    refused = mupnc("runs", db=db_url)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "run 'mupnc db upgrade'" in refused.stderr
    assert mupnc("db", "upgrade", db=db_url).returncode == 0
    require_schema(engine)
    assert mupnc("runs", "--json", db=db_url).stdout.strip() == "[]"


def test_a_missing_schema_is_refused(engine):
    with engine.connect():  # the database exists (an empty SQLite file): it has no schema
        pass
    with pytest.raises(SchemaError, match="has no mupnc schema; run 'mupnc db upgrade'"):
        require_schema(engine)


def test_a_database_from_before_migrations_is_adopted(engine):
    """Foundation tables but no alembic_version: refused, then migrated in place."""
    migrate.upgrade(engine, migrate.FOUNDATION)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    with pytest.raises(SchemaError, match="from before migrations; run 'mupnc db upgrade'"):
        require_schema(engine)
    create_schema(engine)
    require_schema(engine)
    assert "recorded_blocks" in inspect(engine).get_table_names()


def test_the_scheme_rename_keeps_every_runs_scheme(engine):
    """Migration 0004: column ``runs.reversal`` and run-configuration key ``reversal``
    become ``scheme`` with their values; the expected asymmetry column starts empty."""
    migrate.upgrade(engine, "0003")
    with engine.begin() as connection:
        for number, scheme in ((1, "slow"), (2, "kick")):
            connection.execute(
                text(
                    "INSERT INTO runs (number, state, source, start, mode, config, reversal,"
                    " blinded, windows, lost_windows, last_seq) VALUES (:n, 'ended', 'sim',"
                    " '2026-01-01 00:00:00', 'alr', :config, :scheme, false, 0, 0, -1)"
                ),
                {"n": number, "config": f'{{"reversal": "{scheme}", "seed": 7}}', "scheme": scheme},
            )
    migrate.upgrade(engine)
    require_schema(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT number, scheme, config, expected_asymmetry FROM runs ORDER BY number")
        ).all()
    configs = [
        row.config if isinstance(row.config, dict) else json.loads(row.config) for row in rows
    ]
    assert [row.scheme for row in rows] == ["slow", "kick"]
    assert configs == [{"scheme": "slow", "seed": 7}, {"scheme": "kick", "seed": 7}]
    assert [row.expected_asymmetry for row in rows] == [None, None]
