"""Over real Channel Access: the IOC is stopped (SIGTERM) mid-run and started again with
its autosave file; it continues the same run, and the monitor, which stays up, follows it.
Every window the IOCs published is counted exactly once (database totals = the IOC's
scalers, carried across the restart), the windows of the down time are reported as lost
in one gap, and they raise the ``missed_windows`` alarm.  An IOC that crashed and was
restarted into another run ends the monitored run as ``aborted``."""

from __future__ import annotations

import json
import signal
import time

import epics
import numpy as np
import pytest
from db_writes import recorded, sorted_totals
from support.chains import analysis, chain_of, ioc_scalers
from support.cli import mupnc_replay
from support.waiting import wait_for

from mupnc.cli import main
from mupnc.commands import report
from mupnc.db import alarms as alarm_store
from mupnc.db.session import make_engine, transaction
from mupnc.ioc.autosave import SAVE_PERIOD, load
from mupnc.offline import reanalyze
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

WINDOW_RATE = 240.0  # the default


def recorded_seq(engine, run: int) -> tuple[np.ndarray, set[int]]:
    """Every recorded window's seq in window order, and the streams they came in."""
    rows = recorded(engine, run)
    return np.concatenate([block.seq for _, block in rows]), {s for s, _ in rows}


def test_a_restarted_ioc_continues_the_run_and_nothing_is_counted_twice(
    tmp_path, ca_env, capfd, ioc_prefix
):
    db = f"sqlite:///{tmp_path / 'restart.db'}"
    autosave = tmp_path / "mupnc.ioc.autosave"
    run = new_run(db, SourceConfig(asymmetry=0.01, muon_rate=1e9, seed=5))
    engine = make_engine(db)
    ioc = ["ioc", "--run", str(run), "--asymmetry", "0.01", "--rate", "1e9", "--seed", "5"]
    ioc += ["--prefix", ioc_prefix, "--block-rate", "5", "--autosave", str(autosave)]
    seq_pv = ioc_prefix + "DAQ:SEQ"
    with chain_of(db, ca_env, ioc, ["-v", "monitor", "--prefix", ioc_prefix]) as chain:
        wait_for(lambda: (epics.caget(seq_pv, timeout=1) or -1) > 3 * WINDOW_RATE, 60, "data")
        # A fault switched on by the operator survives the restart (the autosave has it).
        epics.caput(ioc_prefix + "RUN:FAULT:CHARGE_ASYMMETRY", "ON", wait=True, timeout=5)
        wait_for(
            lambda: (kept := load(autosave)) is not None and "charge_asymmetry" in kept.faults,
            10,
            f"the fault in the autosave (saved every {SAVE_PERIOD:g} s)",
        )
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
        scalers = ioc_scalers(ioc_prefix)
        published_seq = epics.caget(seq_pv, timeout=10)

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
    replay, _ = mupnc_replay(db, run, "--speed", "max")
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
    ioc = ["ioc", "--seed", "3", "--prefix", ioc_prefix, "--block-rate", "5"]
    seq_pv = ioc_prefix + "DAQ:SEQ"
    monitor = ["monitor", "--prefix", ioc_prefix]
    with chain_of(db, ca_env, [*ioc, "--run", str(first)], monitor) as chain:
        wait_for(lambda: (epics.caget(seq_pv, timeout=1) or -1) > 2 * WINDOW_RATE, 60, "data")
        time.sleep(1.5)
        chain.signal("ioc", signal.SIGKILL)  # a crash: the run is not ended
        assert chain.wait("ioc", 20) == -signal.SIGKILL
        chain.start("ioc", [*ioc, "--run", str(second)], ca_env["ioc"])
        assert chain.wait("monitor", 60) == 0, "the monitor did not end the run it monitored"

    assert f"the IOC now serves run {second}" in capfd.readouterr().err
    summary = report(db, first)
    assert summary["state"] == "aborted"
    assert summary["windows"] > 2 * WINDOW_RATE
