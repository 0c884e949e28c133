"""The monitor's result PVs over real Channel Access: an undefined result is NaN with
INVALID severity and UDF status, never a number (``MON:CHI2_NDF`` used to read 0.0 for
the first minutes of every run)."""

from __future__ import annotations

import math
import uuid

import epics
import pytest
from caproto import AlarmSeverity, AlarmStatus
from conftest import MONITOR_PORT

from mupnc.monitor.publisher import ResultPublisher

pytestmark = pytest.mark.ca


@pytest.fixture
def publisher(monkeypatch):
    monkeypatch.setenv("EPICS_CAS_SERVER_PORT", str(MONITOR_PORT))
    monkeypatch.setenv("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1")
    prefix = f"P{uuid.uuid4().hex[:8].upper()}:"
    served = ResultPublisher(prefix)
    yield prefix, served
    served.close()


def read(name: str) -> dict:
    data = epics.PV(name, form="time").get_with_metadata(timeout=10, as_string=False)
    assert data is not None, f"{name} did not answer"
    return data


def test_undefined_results_are_nan_and_invalid(publisher) -> None:
    prefix, served = publisher
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


def test_nothing_published_yet_reads_nan(publisher) -> None:
    prefix, _ = publisher
    assert math.isnan(read(f"{prefix}MON:ASYM")["value"])
