"""Over real Channel Access: the IOC is stopped (SIGTERM) mid-run and started again with
its autosave file; it continues the same run, and the monitor, which stays up, follows it.
Every window the IOCs published is counted exactly once (database totals = the IOC's
scalers, carried across the restart), the windows of the down time are reported as lost
in one gap, and they raise the ``missed_windows`` alarm.  A restarted IOC that serves
another run ends the monitored run as ``aborted``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import epics
import numpy as np
import pytest
from db_writes import sorted_totals
from sqlalchemy import select

from mupnc.cli import main
from mupnc.commands import report
from mupnc.db import alarms as alarm_store
from mupnc.db.block_codec import decode
from mupnc.db.models import RecordedBlock
from mupnc.db.session import make_engine, transaction
from mupnc.offline import reanalyze
from mupnc.orchestrate import Chain
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

WINDOW_RATE = 240.0  # the default
NOT_ANALYSIS = {"run", "start", "end", "source", "replay_of", "alarms", "reanalysis"}


def analysis(summary: dict) -> dict:
    """What a replay or reanalysis must give again (not the run's identity or times)."""
    return {k: v for k, v in summary.items() if k not in NOT_ANALYSIS}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def recorded_seq(engine, run: int) -> tuple[np.ndarray, set[int]]:
    """Every recorded window's seq in window order, and the streams they came in."""
    with transaction(engine) as session:
        rows = session.execute(
            select(RecordedBlock.stream_id, RecordedBlock.payload)
            .where(RecordedBlock.run == run)
            .order_by(RecordedBlock.first_seq)
        ).all()
    return np.concatenate([decode(p).seq for _, p in rows]), {s for s, _ in rows}


def test_a_restarted_ioc_continues_the_run_and_nothing_is_counted_twice(
    tmp_path, ca_env, capfd, ioc_prefix
):
    db = f"sqlite:///{tmp_path / 'restart.db'}"
    autosave = tmp_path / "mupnc.ioc.autosave"
    run = new_run(db, SourceConfig(asymmetry=0.01, muon_rate=1e9, seed=5))
    engine = make_engine(db)
    chain = Chain(db=db)
    ioc = ["ioc", "--run", str(run), "--asymmetry", "0.01", "--rate", "1e9", "--seed", "5"]
    ioc += ["--prefix", ioc_prefix, "--block-rate", "5", "--autosave", str(autosave)]
    seq_pv = ioc_prefix + "DAQ:SEQ"
    try:
        chain.start("ioc", ioc, ca_env["ioc"])
        chain.start("monitor", ["-v", "monitor", "--prefix", ioc_prefix], ca_env["monitor"])
        wait_for(lambda: (epics.caget(seq_pv, timeout=1) or -1) > 3 * WINDOW_RATE, 60, "data")
        # A fault switched on by the operator survives the restart (the autosave has it).
        epics.caput(ioc_prefix + "RUN:FAULT:CHARGE_ASYMMETRY", "ON", wait=True, timeout=5)
        time.sleep(1.5)  # saved at least once since
        chain.signal("ioc", signal.SIGTERM)
        assert chain.wait("ioc", 20) == 0
        saved = json.loads(autosave.read_text())
        assert saved["run"] == run and not saved["ended"]
        assert "charge_asymmetry" in saved["faults"]
        time.sleep(2.0)  # the down time: windows the helicity source runs through unpublished
        chain.start("ioc", ioc, ca_env["ioc"])
        wait_for(
            lambda: (epics.caget(seq_pv, timeout=1) or -1) > saved["next_seq"] + 3 * WINDOW_RATE,
            60,
            "the restarted IOC's data",
        )
        assert epics.caget(ioc_prefix + "RUN:NUMBER", timeout=5) == run
        fault = epics.caget(ioc_prefix + "RUN:FAULT:CHARGE_ASYMMETRY", as_string=True, timeout=5)
        assert fault == "ON"
        epics.caput(ioc_prefix + "RUN:FAULT:CHARGE_ASYMMETRY", "OFF", wait=True, timeout=5)
        assert chain.failed() is None
        assert chain.end_run(), "the monitor did not finish the run cleanly"
        scalers = np.array([epics.caget(f"{ioc_prefix}DAQ:SCALER:{s}") for s in ("PLUS", "MINUS")])
        published_seq = epics.caget(seq_pv, timeout=10)
    finally:
        chain.shutdown()

    err = capfd.readouterr().err
    assert "continuing run" in err and "the IOC was restarted" in err
    summary = report(db, run)
    assert summary["state"] == "ended"
    seq, streams = recorded_seq(engine, run)
    assert len(streams) == 2
    assert np.all(np.diff(seq) > 0), "a window was recorded twice"
    gaps = np.flatnonzero(np.diff(seq) > 1)
    assert gaps.size == 1, "the down time is one gap, nothing else is missing"
    down_time = int(seq[gaps[0] + 1] - seq[gaps[0]] - 1)
    # both IOCs stop and start on pattern (quartet) boundaries: no pattern is cut in two
    assert (seq[gaps[0]] + 1) % 4 == 0 and seq[gaps[0] + 1] % 4 == 0
    assert down_time >= 2.0 * WINDOW_RATE
    assert seq[0] == 0 and seq[-1] == published_seq
    assert summary["windows"] == seq.size
    assert summary["lost_windows"] == down_time
    assert summary["windows"] + summary["lost_windows"] == published_seq + 1
    errors = {k: v for k, v in summary["helicity_errors"].items() if k != "missed_windows"}
    assert all(v == 0 for v in errors.values()), errors
    names = [c["name"] for c in summary["channels"]]
    np.testing.assert_array_equal(sorted_totals(engine, run, names), scalers)
    with transaction(engine) as session:
        raised = {a["name"] for a in alarm_store.alarm_list(session, closed=True)}
    assert "missed_windows" in raised
    assert json.loads(autosave.read_text())["ended"]
    engine.dispose()

    # The two-stream recording replays (over CA, at max speed) and reanalyses to the same
    # analysis, down to the one gap of missed windows.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    replay_command = ["replay", str(run), "--speed", "max", "--no-dashboard"]
    done = subprocess.run(
        [sys.executable, "-m", "mupnc", "--db", db, *replay_command],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    replay = int(done.stdout.split()[1])
    assert analysis(report(db, replay)) == analysis(summary)
    engine = make_engine(db)
    with transaction(engine) as session:  # one stream replayed: no block counted lost
        replay_alarms = {a["name"] for a in alarm_store.alarm_list(session, replay, closed=True)}
    engine.dispose()
    assert replay_alarms == {"missed_windows"}
    assert analysis(reanalyze(db, run, None, unblind=False)) == analysis(summary)
    parquet = tmp_path / "two_streams.parquet"
    assert main(["--db", db, "export", str(run), str(parquet)]) == 0
    capfd.readouterr()
    assert main(["--db", db, "import", str(parquet)]) == 0
    imported = int(capfd.readouterr().out.split()[1].rstrip(":"))
    assert analysis(reanalyze(db, imported, None, unblind=False)) == analysis(summary)


def test_a_restarted_ioc_serving_another_run_aborts_the_monitored_one(
    tmp_path, ca_env, capfd, ioc_prefix
):
    db = f"sqlite:///{tmp_path / 'new_run.db'}"
    first, second = (new_run(db, SourceConfig(seed=3)) for _ in range(2))
    chain = Chain(db=db)
    ioc = ["ioc", "--seed", "3", "--prefix", ioc_prefix, "--block-rate", "5"]
    seq_pv = ioc_prefix + "DAQ:SEQ"
    try:
        chain.start("ioc", [*ioc, "--run", str(first)], ca_env["ioc"])
        chain.start("monitor", ["monitor", "--prefix", ioc_prefix], ca_env["monitor"])
        wait_for(lambda: (epics.caget(seq_pv, timeout=1) or -1) > 2 * WINDOW_RATE, 60, "data")
        time.sleep(1.5)
        chain.signal("ioc", signal.SIGTERM)
        assert chain.wait("ioc", 20) == 0
        chain.start("ioc", [*ioc, "--run", str(second)], ca_env["ioc"])
        assert chain.wait("monitor", 60) == 0, "the monitor did not end the run it monitored"
    finally:
        chain.shutdown()

    assert f"the IOC now serves run {second}" in capfd.readouterr().err
    summary = report(db, first)
    assert summary["state"] == "aborted"
    assert summary["windows"] > 2 * WINDOW_RATE
