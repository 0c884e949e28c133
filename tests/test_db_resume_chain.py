"""Over real Channel Access: the monitor is killed (SIGKILL) mid-run and started again; the
run it finishes still equals the IOC's helicity-gated scalers exactly, and the recording
holds every window once, or, if the monitor was away longer than the IOC's ring holds,
every window it could not take back is counted lost and alarmed."""

from __future__ import annotations

import time
from collections.abc import Callable

import epics
import numpy as np
import pytest
from db_writes import recorded, sorted_totals
from support.chains import chain_of, ioc_scalers
from support.waiting import wait_for

from mupnc.commands import report
from mupnc.db.alarms import alarm_list
from mupnc.db.models import MonitorCheckpoint
from mupnc.db.session import make_engine, transaction
from mupnc.monitor.ingest import REFILL_BATCHES_PER_CALL, RING_READ_BATCH
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca


def wait_for_checkpoint(engine, run: int, after: float, timeout: float = 60) -> None:
    """Until the monitor has written a checkpoint newer than ``after`` (time.time())."""

    def written() -> bool:
        with transaction(engine) as session:
            checkpoint = session.get(MonitorCheckpoint, run)
            return checkpoint is not None and checkpoint.time.timestamp() > after

    wait_for(written, timeout, "a checkpoint of the monitor", step=0.2)


def kill_and_restart_monitor(
    tmp_path, ca_env, ioc_prefix, block_rate: int, away: Callable[[int], float] | None = None
) -> tuple[str, int, dict, np.ndarray, int]:
    """A run with an IOC at ``block_rate`` blocks/s whose monitor is killed (no clean-up:
    blocks since its last flush are lost with it) and started again after ``away`` seconds
    (``None``: at once; a callable of the ring depth in blocks: that long), then ended.
    Returns (database URL, run, report, the IOC's PLUS/MINUS scalers, last published seq)."""
    db = f"sqlite:///{tmp_path / 'resume.db'}"
    run = new_run(db, SourceConfig(asymmetry=0.01, muon_rate=1e9, seed=9))
    engine = make_engine(db)
    sim = ["--asymmetry", "0.01", "--rate", "1e9", "--seed", "9", "--prefix", ioc_prefix]
    sim += ["--block-rate", str(block_rate)]
    monitor = ["monitor", "--prefix", ioc_prefix]
    ioc = ["ioc", "--run", str(run), *sim]
    try:
        with chain_of(db, ca_env, ioc, monitor) as chain:
            wait_for_checkpoint(engine, run, after=time.time() + 2)
            ring = int(epics.caget(ioc_prefix + "DAQ:RING_DEPTH", timeout=10))
            chain.processes["monitor"].kill()
            chain.processes["monitor"].wait()
            if away is not None:
                time.sleep(away(ring))
            chain.start("monitor", ["-v", *monitor], ca_env["monitor"])
            wait_for_checkpoint(engine, run, after=time.time() + 2)
            assert chain.failed() is None
            assert chain.end_run(), "the restarted monitor did not finish the run cleanly"
            scalers = ioc_scalers(ioc_prefix)
            published_seq = int(epics.caget(ioc_prefix + "DAQ:SEQ", timeout=10))
    finally:
        engine.dispose()
    return db, run, report(db, run), scalers, published_seq


def recorded_seq(db: str, run: int) -> np.ndarray:
    """Sequence numbers of the run's recorded windows, in recording order."""
    engine = make_engine(db)
    blocks = recorded(engine, run)
    engine.dispose()
    return np.concatenate([block.seq for _, block in blocks])


def channel_totals(db: str, summary: dict) -> np.ndarray:
    engine = make_engine(db)
    totals = sorted_totals(engine, summary["run"], [c["name"] for c in summary["channels"]])
    engine.dispose()
    return totals


def test_a_killed_monitor_restarts_and_counts_every_window_once(
    tmp_path, ca_env, capfd, ioc_prefix
):
    # 5 blocks/s: the IOC's 128-block ring covers 25 s, ample for a restart.
    db, run, summary, scalers, published_seq = kill_and_restart_monitor(
        tmp_path, ca_env, ioc_prefix, block_rate=5
    )
    assert f"run {run}: resumed from the checkpoint" in capfd.readouterr().err
    assert summary["state"] == "ended"
    assert summary["windows"] == published_seq + 1
    assert summary["lost_windows"] == 0
    assert all(v == 0 for v in summary["helicity_errors"].values()), summary["helicity_errors"]
    np.testing.assert_array_equal(channel_totals(db, summary), scalers)
    np.testing.assert_array_equal(recorded_seq(db, run), np.arange(published_seq + 1))


def test_blocks_gone_from_the_ring_are_counted_lost_and_alarmed(tmp_path, ca_env, ioc_prefix):
    """The monitor is away 5 s longer than the IOC's ring holds (20 s of 20 Hz blocks): on
    its restart it refills what it can from the ring and counts the rest as lost, with the
    ``lost_blocks`` alarm; every other window is recorded once."""
    db, run, summary, scalers, published_seq = kill_and_restart_monitor(
        tmp_path, ca_env, ioc_prefix, block_rate=20, away=lambda ring: ring / 20 + 5
    )
    seq = recorded_seq(db, run)
    steps = np.diff(seq)
    assert np.all(steps > 0)  # nothing recorded twice
    gaps = steps[steps > 1] - 1
    # at least the 5 s beyond the ring (more: the IOC goes on while the monitor starts up)
    assert gaps.sum() >= 5 * 240 * 0.8
    assert summary["lost_windows"] == int(gaps.sum()) == published_seq + 1 - seq.size
    assert summary["windows"] == seq.size  # windows seen: recorded once each
    engine = make_engine(db)
    with transaction(engine) as session:
        alarms = {a["name"] for a in alarm_list(session, run=run, closed=True)}
    engine.dispose()
    assert "lost_blocks" in alarms
    totals = channel_totals(db, summary)
    assert np.all(totals < scalers)  # the counts of the lost windows are missing


def test_a_refill_of_most_of_the_ring_reaches_the_analysis_a_few_batches_at_a_time(
    tmp_path, ca_env, capfd, ioc_prefix
):
    """The monitor is away for three quarters of the IOC's ring (15 s of 20 Hz blocks, 300
    blocks): its restart refills them a bounded number of batches per call once the oldest
    quarter of the ring is read (the log says how many are still to come), so memory stays
    flat, and still counts every window once."""
    db, run, summary, scalers, published_seq = kill_and_restart_monitor(
        tmp_path, ca_env, ioc_prefix, block_rate=20, away=lambda ring: 0.75 * ring / 20
    )
    steps = [int(line.split(": ")[-1].split()[0]) for line in capfd.readouterr().err.splitlines()
             if "refilling from the ring:" in line]  # fmt: skip
    per_call = REFILL_BATCHES_PER_CALL * RING_READ_BATCH
    assert len(steps) >= 2, steps  # more than one call
    assert steps[0] - steps[1] >= per_call, steps  # the first call read at least its bound
    assert summary["lost_windows"] == 0
    np.testing.assert_array_equal(channel_totals(db, summary), scalers)
    np.testing.assert_array_equal(recorded_seq(db, run), np.arange(published_seq + 1))
