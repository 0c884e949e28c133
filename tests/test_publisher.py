"""The monitor's result PVs over real Channel Access: an undefined result is NaN with
INVALID severity and UDF status, never a number (``MON:CHI2_NDF`` used to read 0.0 for
the first minutes of every run)."""

from __future__ import annotations

import math
import uuid

import epics
import pytest
from caproto import AlarmSeverity, AlarmStatus
from support.waiting import wait_for

from mupnc.monitor.publisher import ResultPublisher

pytestmark = pytest.mark.ca


@pytest.fixture
def publisher(monkeypatch, ca_env):
    """A result publisher served by this process on its own CA port (``MONITOR_PORT``)."""
    for name, value in ca_env["monitor"].items():
        monkeypatch.setenv(name, value)
    prefix = f"P{uuid.uuid4().hex[:8].upper()}:"
    served = ResultPublisher(prefix)
    yield prefix, served
    served.close()


def read(name: str) -> dict:
    data = epics.PV(name, form="time").get_with_metadata(timeout=10, as_string=False)
    assert data is not None, f"{name} did not answer"
    return data


def test_undefined_results_are_nan_and_invalid(publisher) -> None:
    """Before the first result, then with a defined asymmetry and an undefined chi2/ndf
    (one publisher per test process: its CA port is the process's own)."""
    prefix, served = publisher
    assert math.isnan(read(f"{prefix}MON:ASYM")["value"])  # nothing published yet
    served.publish(asym=1.5e-3, asym_err=2e-4, chi2_ndf=math.nan, estimator="counting")
    chi2 = read(f"{prefix}MON:CHI2_NDF")
    assert math.isnan(chi2["value"])
    assert (chi2["severity"], chi2["status"]) == (AlarmSeverity.INVALID_ALARM, AlarmStatus.UDF)
    asym = read(f"{prefix}MON:ASYM")
    assert asym["value"] == 1.5e-3
    assert (asym["severity"], asym["status"]) == (AlarmSeverity.NO_ALARM, AlarmStatus.NO_ALARM)
    assert epics.caget(f"{prefix}MON:ESTIMATOR", as_string=True, timeout=10) == "COUNTING"
    served.publish(chi2_ndf=1.02)
    chi2 = read(f"{prefix}MON:CHI2_NDF")
    assert chi2["value"] == 1.02 and chi2["severity"] == AlarmSeverity.NO_ALARM
    # the decoder's lock and the windows it holds
    assert epics.caget(f"{prefix}MON:DECODER", as_string=True, timeout=10) == "LEARNING"
    served.publish(decoder="UNLOCKED", windows_held=1234)
    wait_for(  # a client may still hold the previous value for a moment
        lambda: epics.caget(f"{prefix}MON:DECODER", as_string=True, timeout=10) == "UNLOCKED",
        10,
        "MON:DECODER = UNLOCKED",
    )
    assert epics.caget(f"{prefix}MON:WINDOWS_HELD", timeout=10) == 1234
