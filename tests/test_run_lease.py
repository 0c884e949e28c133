"""One monitor per run, and runs that always end (no Channel Access): the lease in the run's
row (:mod:`mupnc.db.lease`), a recorder that writes nothing once its lease is lost,
``mupnc runs`` flagging an open run without a monitor, ``mupnc run close``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from db_writes import Monitor, new_run, simulate
from sqlalchemy import func, select
from support.cli import in_process

from mupnc.db import alarms as alarm_store
from mupnc.db.lease import (
    LEASE_SECONDS,
    LeaseHeldError,
    LeaseLostError,
    MonitorHolder,
    end_run,
    renew,
    take,
)
from mupnc.db.models import Alarm, ResultSnapshot, Run
from mupnc.db.session import transaction

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_live_lease_refuses_a_second_monitor_naming_host_and_pid(engine):
    run = new_run(engine)
    first = MonitorHolder(host="daq-host-1", pid=4242)
    second = MonitorHolder(host="shift-pc", pid=777)
    with transaction(engine) as session:
        take(session, run, first, at(0))
    for t in (1.0, LEASE_SECONDS - 1):
        with transaction(engine) as session, pytest.raises(LeaseHeldError) as refused:
            take(session, run, second, at(t))
        assert "pid 4242 on daq-host-1" in str(refused.value)
        assert "\n" not in str(refused.value)
    with transaction(engine) as session:
        take(session, run, first, at(2))  # the holder itself may take it again (resume)
        renew(session, run, first, at(3))


def test_a_lease_of_a_killed_monitor_on_this_host_is_taken_over_at_once(engine):
    """A monitor restarted after a SIGKILL need not wait for the lease to expire: its
    predecessor ran here and its process is gone.  One alive here is still refused."""
    run = new_run(engine)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with transaction(engine) as session:
        take(session, run, MonitorHolder(pid=gone.pid), at(0))
    with transaction(engine) as session:
        take(session, run, MonitorHolder(), at(1))
    with transaction(engine) as session, pytest.raises(LeaseHeldError):
        take(session, run, MonitorHolder(), at(2))  # the holder at 1 s: this process


def test_an_expired_lease_is_taken_over_and_the_old_monitor_writes_nothing_more(engine):
    """A killed (or stalled) monitor: after LEASE_SECONDS the next one takes the run; the old
    one, back, finds its lease lost and its flush writes nothing."""
    run = new_run(engine)
    blocks, _ = simulate()
    old = Monitor(engine, run)
    old.recorder.holder = MonitorHolder(host="a", pid=1)
    with transaction(engine) as session:
        take(session, run, old.recorder.holder, datetime.now(UTC) - timedelta(seconds=60))
    new = MonitorHolder(host="b", pid=2)
    with transaction(engine) as session:
        take(session, run, new, datetime.now(UTC))
    old.ingest(blocks[:4])
    with pytest.raises(LeaseLostError):
        old.flush()
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(ResultSnapshot)) == 0
        assert session.get(Run, run).monitor_pid == 2
        with pytest.raises(LeaseLostError):
            renew(session, run, old.recorder.holder, datetime.now(UTC))


def test_the_recorder_renews_its_lease_and_the_end_releases_it(engine):
    run = new_run(engine)
    blocks, _ = simulate()
    monitor = Monitor(engine, run)
    monitor.recorder.holder = holder = MonitorHolder()
    with transaction(engine) as session:
        take(session, run, holder, datetime.now(UTC) - timedelta(seconds=10))
    monitor.run(blocks)
    with transaction(engine) as session:
        row = session.get(Run, run)
        assert (datetime.now(UTC) - row.heartbeat).total_seconds() < 5  # renewed by flushes
        assert row.monitor_token == holder.token
    monitor.end()
    with transaction(engine) as session:
        row = session.get(Run, run)
        assert row.state == "ended" and row.monitor_token is None
    with transaction(engine) as session:  # a new monitor may take an ended run's lease again
        take(session, run, MonitorHolder(), datetime.now(UTC))


def test_end_run_closes_an_open_run_and_its_alarms_once(engine):
    run = new_run(engine)
    with transaction(engine) as session:
        session.add(
            Alarm(run=run, name="stuck_helicity", severity="MAJOR", state="active", since=at(0))
        )
    with transaction(engine) as session:
        assert end_run(session, run, "aborted", "the ioc process stopped unexpectedly", at(5))
        assert not end_run(session, run, "aborted", "again", at(6))
    with transaction(engine) as session:
        row = session.get(Run, run)
        assert (row.state, row.end_reason) == ("aborted", "the ioc process stopped unexpectedly")
        assert alarm_store.open_alarms(session, run) == []


def stuck_run(engine, minutes_ago: float, live_monitor: bool = False) -> int:
    """A run left ``running`` by a monitor last seen ``minutes_ago`` (or, with
    ``live_monitor``, renewed just now)."""
    run = new_run(engine)
    then = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    holder = MonitorHolder(host="daq-host-1", pid=4242)
    with transaction(engine) as session:
        row = session.get(Run, run)
        row.state, row.start = "running", then
        take(session, run, holder, then)
        if live_monitor:
            renew(session, run, holder, datetime.now(UTC))
    return run


def test_runs_flags_a_run_whose_monitor_is_gone_and_run_close_ends_it(engine, db_url, capsys):
    stuck = stuck_run(engine, minutes_ago=30)
    live = stuck_run(engine, minutes_ago=30, live_monitor=True)
    status, out, _ = in_process(capsys, "--db", db_url, "runs")
    assert status == 0
    lines = {int(line.split()[0]): line for line in out.splitlines() if line.split()[0].isdigit()}
    assert "NO MONITOR" in lines[stuck] and "NO MONITOR" not in lines[live]
    assert f"mupnc run close {stuck}" in out
    listed = json.loads(in_process(capsys, "--db", db_url, "runs", "--json")[1])
    by_run = {r["run"]: r for r in listed}
    assert by_run[stuck]["monitor"] == "gone" and by_run[live]["monitor"] == "live"

    status, _, err = in_process(capsys, "--db", db_url, "run", "close", str(live))
    assert status == 2 and "pid 4242 on daq-host-1" in err  # refused: its monitor is alive
    status, out, _ = in_process(
        capsys,
        "run",
        "close",
        str(stuck),
        "--reason",
        "DAQ crashed",
        "--who",
        "alice",
        "--db",
        db_url,
    )
    assert status == 0 and f"run {stuck} aborted" in out
    with transaction(engine) as session:
        row = session.get(Run, stuck)
        assert row.state == "aborted" and row.end is not None
        assert row.end_reason == "closed by alice: DAQ crashed"
    status, _, err = in_process(capsys, "--db", db_url, "run", "close", str(stuck))
    assert status == 2 and "aborted already" in err
    status, _, err = in_process(capsys, "--db", db_url, "run", "close", "999")
    assert status == 1 and "run 999 is not in the database" in err


def test_report_gives_the_end_reason(engine, db_url, capsys):
    run = new_run(engine)
    with transaction(engine) as session:
        end_run(session, run, "aborted", "stopped (SIGHUP) during start-up", at(1))
    summary = json.loads(in_process(capsys, "--db", db_url, "report", str(run), "--json")[1])
    assert summary["state"] == "aborted"
    assert summary["end_reason"] == "stopped (SIGHUP) during start-up"
