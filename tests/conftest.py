"""Test-suite set-up: a private, loopback-only Channel Access environment.

libca reads its environment once per process, so the ports are chosen here, at import
time, before any test touches pyepics.  IOCs started by tests serve on ``IOC_PORT``;
the test process itself may serve result PVs on ``MONITOR_PORT``.
"""

from __future__ import annotations

import os
import uuid

import pytest

from mupnc.db.session import create_schema, make_engine
from mupnc.epics_env import BeaconSink, ca_environment, free_port

IOC_PORT, MONITOR_PORT, REPEATER_PORT = free_port(), free_port(), free_port()
CA_PORTS = [IOC_PORT, MONITOR_PORT]
os.environ.update(ca_environment(None, CA_PORTS, REPEATER_PORT))


@pytest.fixture(scope="session")
def ca_env() -> dict:
    """Environment for child processes: ``ca_env['ioc']`` and ``ca_env['monitor']``."""
    sink = BeaconSink(REPEATER_PORT)
    yield {
        "ioc": ca_environment(IOC_PORT, CA_PORTS, REPEATER_PORT),
        "monitor": ca_environment(MONITOR_PORT, CA_PORTS, REPEATER_PORT),
    }
    sink.close()


def _postgres_server():
    """A new PostgreSQL server, not started; the test is skipped where there is none."""
    from support.pg_server import PostgresServer, ServerUnavailableError

    try:
        return PostgresServer()
    except ServerUnavailableError as err:
        pytest.skip(f"PostgreSQL tests need a server: {err}")


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (initdb + pg_ctl in a temporary folder)."""
    server = _postgres_server()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def own_pg_server():
    """A PostgreSQL server of the test's own, which it starts (and may stop) itself."""
    server = _postgres_server()
    yield server
    server.destroy()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> str:
    """URL of a fresh, empty database: an SQLite file, or a new database on ``pg_server``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server = request.getfixturevalue("pg_server")
    return server.create_database(f"test_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def engine(db_url):
    """An engine on ``db_url``, with the mupnc schema."""
    engine = make_engine(db_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ioc_prefix() -> str:
    """A PV prefix of the test's own.  libca in this process caches channels by name; a
    channel whose IOC has gone reconnects to a new IOC only after its search back-off, so
    tests that start IOCs must not reuse an earlier test's PV names."""
    return f"T{uuid.uuid4().hex[:8].upper()}:"
