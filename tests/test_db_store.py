"""Models, run allocation and the runs/report commands on SQLite and PostgreSQL, and several
monitors writing different runs into one PostgreSQL server at once."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from db_writes import N_BLOCKS, Monitor, new_run, simulate, sorted_totals
from sqlalchemy import func, select
from support.cli import mupnc

from mupnc.db.models import Alarm, AlarmTransition, RecordedBlock, Run, SlowControlSample
from mupnc.db.session import create_schema, make_engine, transaction
from mupnc.db.store import allocate_run
from mupnc.runs import run_config
from mupnc.sim.source import SourceConfig

T0 = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def simulated():
    return simulate()


def test_run_configuration_alarms_and_slow_controls_round_trip(engine):
    config = {**run_config(SourceConfig(mode="afb")), "target_z": 36}
    config["slow_controls"] = {"BEAM:MOMENTUM": 29.0, "HEL:DELAY": 2}
    with transaction(engine) as session:
        number = allocate_run(session, source="sim", mode="afb", config=config)
        alarm = Alarm(
            run=number,
            name="helicity_errors",
            severity="MAJOR",
            state="active",
            since=T0,
            message="12 prediction mismatches",
        )
        session.add(alarm)
        session.flush()
        session.add_all(
            [
                AlarmTransition(
                    alarm_id=alarm.id,
                    time=T0,
                    to_state="active",
                    to_severity="MAJOR",
                    reason="threshold 10 exceeded",
                ),
                AlarmTransition(
                    alarm_id=alarm.id,
                    time=T0 + timedelta(seconds=30),
                    from_state="active",
                    to_state="acknowledged",
                    from_severity="MAJOR",
                    to_severity="MAJOR",
                    reason="looking into it",
                    who="shift leader",
                ),
            ]
        )
        session.add_all(
            SlowControlSample(pv="MUPNC:BEAM:RATE", time=T0 + timedelta(seconds=i), value=1e8 + i)
            for i in range(3)
        )
    with transaction(engine) as session:
        run = session.get(Run, number)
        assert (run.mode, run.target_z, run.momentum, run.scheme) == ("afb", 36, 29.0, "fast")
        assert (run.pattern, run.delay_patterns) == ("quartet", 2)
        assert run.slow_controls == {"BEAM:MOMENTUM": 29.0, "HEL:DELAY": 2}
        roles = [c["role"] for c in run.channel_map["channels"]]
        assert roles == ["forward", "backward"] + ["bpm"] * 5 + ["coil"] * 5
        assert run.start.tzinfo is not None
        history = session.scalars(select(AlarmTransition).order_by(AlarmTransition.time)).all()
        assert [(h.from_state, h.to_state, h.who) for h in history] == [
            (None, "active", "monitor"),
            ("active", "acknowledged", "shift leader"),
        ]
        samples = session.scalars(
            select(SlowControlSample).where(SlowControlSample.pv == "MUPNC:BEAM:RATE")
        ).all()
        assert [s.value for s in samples] == [1e8, 1e8 + 1, 1e8 + 2]
        assert {(s.severity, s.status) for s in samples} == {("NO_ALARM", "NO_ALARM")}
        assert samples[0].time == T0


def test_runs_and_report_commands(engine, db_url, simulated):
    blocks, _ = simulated
    run = new_run(engine)
    monitor = Monitor(engine, run)
    monitor.run(blocks)
    monitor.end()
    with transaction(engine) as session:
        session.add(
            Alarm(run=run, name="charge_asymmetry", severity="MINOR", state="active", since=T0)
        )
        stuck = Alarm(
            run=run,
            name="stuck_helicity",
            severity="MAJOR",
            state="cleared",
            since=T0,
            message="+0 in 252 windows",  # the newest message, once it cleared
            acknowledged=False,
        )
        session.add(stuck)
        session.flush()
        for k, (state, severity, reason) in enumerate(
            [("active", "MAJOR", "+40 in 60 windows"), ("cleared", "MAJOR", "+0 in 252 windows")]
        ):
            session.add(
                AlarmTransition(
                    alarm_id=stuck.id,
                    time=T0 + timedelta(seconds=k),
                    to_state=state,
                    to_severity=severity,
                    reason=reason,
                )
            )

    listed = mupnc("runs", "--json", db=db_url)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert {k: entry[k] for k in ("run", "state", "windows", "source", "replay_of")} == {
        "run": run,
        "state": "ended",
        "windows": N_BLOCKS * 12,
        "source": "sim",
        "replay_of": None,
    }
    assert datetime.fromisoformat(entry["start"]).tzinfo is not None

    result = mupnc("report", str(run), "--json", db=db_url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["run"] == run and report["windows"] == N_BLOCKS * 12
    assert report["lost_windows"] == 0 and report["blinded"] is False
    assert report["patterns_good"] == N_BLOCKS * 12 // 4
    assert report["patterns_good_percent"] == pytest.approx(100.0)
    a = report["asymmetry"]
    assert abs(a["value"] - 1e-3) < 3 * a["error"] and a["chi2_ndf"] > 0
    assert [c["name"] for c in report["channels"]][:8] == monitor.acc.channel_map.names
    assert report["charge_asymmetry"]["error"] > 0
    assert set(report["helicity_errors"]) >= {"prediction_mismatch", "missed_windows"}
    assert [(x["name"], x["severity"]) for x in report["alarms"]] == [
        ("charge_asymmetry", "MINOR"),
        ("stuck_helicity", "MAJOR"),
    ]

    text = mupnc("report", str(run), db=db_url)
    assert text.returncode == 0
    assert "good patterns 600 (100.0 % of windows)" in text.stdout
    assert "alarms raised: 2" in text.stdout
    assert "MINOR    charge_asymmetry" in text.stdout
    nulls = report["null_asymmetries"]  # the reversal's own check, in the logbook copy too
    assert (
        nulls
        and f"  null asymmetries (ppm, 0 if the reversal is clean): {next(iter(nulls))} "
        in text.stdout
    )
    # a logbook copies why the alarm tripped, not its newest message
    assert "MAJOR    stuck_helicity: +40 in 60 windows  (not acknowledged)" in text.stdout


@pytest.mark.postgres
def test_monitors_write_different_runs_into_one_postgres_at_once(pg_server, simulated):
    """Six writers (threads, one engine each, as on different hosts) allocate their run
    numbers and record whole runs concurrently: distinct numbers, no lost rows."""
    blocks, scalers = simulated
    url = pg_server.create_database("concurrent")
    create_schema(make_engine(url))
    writers = 6
    start, runs, failures = threading.Barrier(writers), [], []

    def monitor() -> None:
        engine = make_engine(url)
        try:
            start.wait()
            run = new_run(engine)
            runs.append(run)
            m = Monitor(engine, run)
            m.run(blocks)
            m.end()
        except Exception as err:  # reported below: a thread must not fail silently
            failures.append(repr(err))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=monitor) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert sorted(runs) == list(range(1, writers + 1))
    engine = make_engine(url)
    for run in runs:
        np.testing.assert_array_equal(sorted_totals(engine, run), scalers)
    with transaction(engine) as session:
        per_run = dict(
            session.execute(
                select(RecordedBlock.run, func.count()).group_by(RecordedBlock.run)
            ).all()
        )
        assert per_run == dict.fromkeys(runs, N_BLOCKS)
        windows = session.scalars(select(Run.windows).where(Run.number.in_(runs))).all()
        assert windows == [N_BLOCKS * 12] * writers
    engine.dispose()
