"""Over real Channel Access: the monitor is killed (SIGKILL) mid-run and started again; the
run it finishes still equals the IOC's helicity-gated scalers exactly, and the recording
holds every window once."""

from __future__ import annotations

import time

import epics
import numpy as np
import pytest
from db_writes import sorted_totals
from sqlalchemy import select

from db.alarms import alarm_list
from db.models import MonitorCheckpoint, RecordedBlock
from db.recording import decode
from db.session import make_engine, transaction
from mupnc.commands import new_run, report
from mupnc.orchestrate import Chain
from sim.source import SourceConfig

pytestmark = pytest.mark.ca


def wait_for_checkpoint(engine, run: int, after: float, timeout: float = 60) -> None:
    """Until the monitor has written a checkpoint newer than ``after`` (time.time())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with transaction(engine) as session:
            checkpoint = session.get(MonitorCheckpoint, run)
            if checkpoint is not None and checkpoint.time.timestamp() > after:
                return
        time.sleep(0.2)
    raise AssertionError("the monitor wrote no checkpoint")


def test_a_killed_monitor_restarts_and_counts_every_window_once(
    tmp_path, ca_env, capfd, ioc_prefix
):
    db = f"sqlite:///{tmp_path / 'resume.db'}"
    run = new_run(db, SourceConfig(asymmetry=0.01, muon_rate=1e9, seed=9))
    engine = make_engine(db)
    chain = Chain(db=db)
    sim = ["--asymmetry", "0.01", "--rate", "1e9", "--seed", "9", "--prefix", ioc_prefix]
    monitor = ["monitor", "--prefix", ioc_prefix]
    try:
        # 5 blocks/s: the IOC's 128-block ring covers 25 s, ample for a restart.
        chain.start("ioc", ["ioc", "--run", str(run), "--block-rate", "5", *sim], ca_env["ioc"])
        chain.start("monitor", monitor, ca_env["monitor"])
        wait_for_checkpoint(engine, run, after=time.time() + 2)
        chain.processes["monitor"].kill()  # no clean-up: blocks since the last flush are lost
        chain.processes["monitor"].wait()
        chain.start("monitor", ["-v", *monitor], ca_env["monitor"])
        wait_for_checkpoint(engine, run, after=time.time() + 2)
        assert chain.failed() is None
        assert chain.end_run(), "the restarted monitor did not finish the run cleanly"
        scalers = [epics.caget(f"{ioc_prefix}DAQ:SCALER:{s}") for s in ("PLUS", "MINUS")]
        published_seq = epics.caget(ioc_prefix + "DAQ:SEQ", timeout=10)
    finally:
        chain.shutdown()

    assert f"run {run}: resumed from the checkpoint" in capfd.readouterr().err
    summary = report(db, run)
    assert summary["state"] == "ended"
    assert summary["windows"] == published_seq + 1
    assert summary["lost_windows"] == 0
    assert all(v == 0 for v in summary["helicity_errors"].values()), summary["helicity_errors"]
    names = [c["name"] for c in summary["channels"]]
    totals = sorted_totals(engine, run, names)
    np.testing.assert_array_equal(totals, np.array(scalers))
    with transaction(engine) as session:
        payloads = session.scalars(
            select(RecordedBlock.payload)
            .where(RecordedBlock.run == run)
            .order_by(RecordedBlock.block_number)
        ).all()
    seq = np.concatenate([decode(p).seq for p in payloads])
    np.testing.assert_array_equal(seq, np.arange(published_seq + 1))
    engine.dispose()


def test_blocks_gone_from_the_ring_are_counted_lost_and_alarmed(tmp_path, ca_env, ioc_prefix):
    """The monitor is away longer than the IOC's ring holds (20 s of 20 Hz blocks): on its
    restart it refills what it can from the ring and counts the rest as lost, with the
    ``lost_blocks`` alarm; every other window is recorded once."""
    db = f"sqlite:///{tmp_path / 'lost.db'}"
    run = new_run(db, SourceConfig(asymmetry=0.01, muon_rate=1e9, seed=9))
    engine = make_engine(db)
    chain = Chain(db=db)
    sim = ["--asymmetry", "0.01", "--rate", "1e9", "--seed", "9", "--prefix", ioc_prefix]
    monitor = ["monitor", "--prefix", ioc_prefix]
    try:
        chain.start("ioc", ["ioc", "--run", str(run), "--block-rate", "20", *sim], ca_env["ioc"])
        chain.start("monitor", monitor, ca_env["monitor"])
        wait_for_checkpoint(engine, run, after=time.time() + 2)
        ring = int(epics.caget(ioc_prefix + "DAQ:RING_DEPTH", timeout=10))
        chain.processes["monitor"].kill()
        chain.processes["monitor"].wait()
        time.sleep(ring / 20 + 5)  # 5 s of blocks more than the ring holds
        chain.start("monitor", monitor, ca_env["monitor"])
        wait_for_checkpoint(engine, run, after=time.time() + 3)
        assert chain.failed() is None
        assert chain.end_run(), "the restarted monitor did not finish the run cleanly"
        scalers = np.array([epics.caget(f"{ioc_prefix}DAQ:SCALER:{s}") for s in ("PLUS", "MINUS")])
        published_seq = epics.caget(ioc_prefix + "DAQ:SEQ", timeout=10)
    finally:
        chain.shutdown()

    summary = report(db, run)
    with transaction(engine) as session:
        payloads = session.scalars(
            select(RecordedBlock.payload)
            .where(RecordedBlock.run == run)
            .order_by(RecordedBlock.first_seq)
        ).all()
        alarms = {a["name"] for a in alarm_list(session, run=run, closed=True)}
    seq = np.concatenate([decode(p).seq for p in payloads])
    steps = np.diff(seq)
    assert np.all(steps > 0)  # nothing recorded twice
    gaps = steps[steps > 1] - 1
    # at least the 5 s beyond the ring (more: the IOC goes on while the monitor starts up)
    assert gaps.sum() >= 5 * 240 * 0.8
    assert summary["lost_windows"] == int(gaps.sum()) == published_seq + 1 - seq.size
    assert summary["windows"] == seq.size  # windows seen: recorded once each
    assert "lost_blocks" in alarms
    totals = sorted_totals(engine, run, [c["name"] for c in summary["channels"]])
    assert np.all(totals <= scalers) and np.all(totals < scalers)  # the lost counts
    engine.dispose()
