"""Test-suite set-up: a private, loopback-only Channel Access environment.

libca reads its environment once per process, so the ports are chosen here, at import
time, before any test touches pyepics.  IOCs started by tests serve on ``IOC_PORT``;
the test process itself may serve result PVs on ``MONITOR_PORT``.
"""

from __future__ import annotations

import os

import pytest

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
