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
