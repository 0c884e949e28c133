"""End to end over real Channel Access on loopback: IOC → monitor → database.

Checks the promise of the foundation: the database's helicity-sorted totals equal the
IOC's helicity-gated scalers exactly, no window is lost, and the injected asymmetry
comes back within 3 sigma.
"""

from __future__ import annotations

import time

import epics
import numpy as np
import pytest
from sqlalchemy import func, select
from support.chains import chain_of, ioc_scalers

from mupnc.commands import report
from mupnc.db.models import HelicityCounts, ResultSnapshot, SlowControlSample
from mupnc.db.session import make_engine, transaction
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

INJECTED = 0.01
SECONDS = 10


def test_chain_counts_every_window_and_recovers_the_asymmetry(tmp_path, ca_env, ioc_prefix):
    db = f"sqlite:///{tmp_path / 'chain.db'}"
    config = SourceConfig(asymmetry=INJECTED, muon_rate=1e9, seed=7)
    run = new_run(db, config)
    sim = ["--asymmetry", str(INJECTED), "--rate", "1e9", "--seed", "7"]
    prefix = ["--prefix", ioc_prefix]
    ioc = ["ioc", "--run", str(run), *prefix, *sim]
    with chain_of(db, ca_env, ioc, ["monitor", *prefix]) as chain:
        published = epics.PV(ioc_prefix + "MON:ASYM", auto_monitor=True, form="time")
        stamps: set[float] = set()
        published.add_callback(lambda timestamp=None, **_: stamps.add(timestamp))
        time.sleep(SECONDS)
        published.clear_callbacks()
        assert chain.failed() is None
        assert chain.end_run(), "the monitor did not finish the run cleanly"
        scaler_plus, scaler_minus = ioc_scalers(ioc_prefix, timeout=10)
        published_seq = epics.caget(ioc_prefix + "DAQ:SEQ", timeout=10)

    summary = report(db, run)
    names = [c["name"] for c in summary["channels"]]
    totals = {}
    with transaction(make_engine(db)) as session:
        for helicity in (1, -1):
            rows = session.execute(
                select(HelicityCounts.channel, func.sum(HelicityCounts.counts))
                .where(HelicityCounts.run == run, HelicityCounts.helicity == helicity)
                .group_by(HelicityCounts.channel)
            ).all()
            totals[helicity] = dict(rows)
    db_plus = np.array([totals[1][n] for n in names])
    db_minus = np.array([totals[-1][n] for n in names])

    assert summary["state"] == "ended"
    assert summary["windows"] == published_seq + 1 > 1000  # the IOC lags the clock under load
    assert summary["lost_windows"] == 0
    assert all(v == 0 for v in summary["helicity_errors"].values()), summary["helicity_errors"]
    assert summary["alarms"] == [], summary["alarms"]  # a clean run raises no alarm
    # the result PVs follow the windows faster than the database's one flush a second
    with transaction(make_engine(db)) as session:
        flushes = session.scalar(
            select(func.count(ResultSnapshot.id)).where(ResultSnapshot.run == run)
        )
    assert len(stamps) >= 1.5 * flushes > 0, (len(stamps), flushes)
    np.testing.assert_array_equal(db_plus, scaler_plus)
    np.testing.assert_array_equal(db_minus, scaler_minus)
    a = summary["asymmetry"]
    assert abs(a["value"] - INJECTED) < 3 * a["error"], a

    # the slow controls are archived: the rate readback at the configured 1e9 muons/s
    with transaction(make_engine(db)) as session:
        samples = session.execute(
            select(SlowControlSample.value, SlowControlSample.status).where(
                SlowControlSample.pv == ioc_prefix + "BEAM:RATE"
            )
        ).all()
    assert len(samples) >= SECONDS  # the IOC updates it every 0.5 s
    # (the first sample may be the value at subscription time, before the first block)
    assert all(abs(rate / 1e9 - 1) < 0.05 for rate, _ in samples[1:]), samples
    assert {status for _, status in samples[1:]} == {"NO_ALARM"}, samples
