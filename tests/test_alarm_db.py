"""Alarms in the database (SQLite and PostgreSQL): occurrences and transitions as the alarm
service stores them, operator actions, and ``mupnc alarms`` (JSON shape, errors)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mupnc.cli import main
from mupnc.daq.severity import Severity
from mupnc.db import alarms as store
from mupnc.db.models import AlarmTransition
from mupnc.db.session import transaction
from mupnc.monitor.alarms.logic import AlarmStatus, Debounce, acknowledge, evaluate
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

T0 = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


def store_run(engine, run: int, name: str, steps) -> list[int | None]:
    """Drive a state machine through ``steps`` (severity or "ack") and store every transition
    like the alarm service; returns the open occurrence id after each step."""
    status, alarm_id, ids = AlarmStatus(), None, []
    for i, step in enumerate(steps):
        now = T0 + timedelta(seconds=i)
        if step == "ack":
            t = acknowledge(status, "acknowledged by Ann")
        else:
            t = evaluate(status, Debounce(), step, now.timestamp(), reason=f"x = {i}")
        if t is not None:
            with transaction(engine) as session:
                alarm_id = store.record_transition(session, alarm_id, run, name, now, t, f"m{i}")
        ids.append(alarm_id)
    return ids


@pytest.fixture
def engine_run(db_url, engine):
    return db_url, engine, new_run(db_url, SourceConfig())


def test_occurrences_open_update_and_close(engine_run) -> None:
    _, engine, run = engine_run
    ok, minor, major = Severity.NO_ALARM, Severity.MINOR, Severity.MAJOR
    ids = store_run(engine, run, "phase_error", [minor, major, ok, "ack", ok, minor])
    first, second = ids[0], ids[-1]
    assert ids == [first, first, first, None, None, second] and second != first
    with transaction(engine) as session:
        listed = store.alarm_list(session)
        every = store.alarm_list(session, closed=True)
        transitions = [
            (t.from_state, t.to_state, t.to_severity, t.who)
            for t in session.query(AlarmTransition).order_by(AlarmTransition.id)
        ]
    assert [(a["id"], a["state"], a["severity"], a["acknowledged"]) for a in listed] == [
        (second, "active", "MINOR", False)
    ]
    closed = next(a for a in every if a["id"] == first)
    assert (closed["state"], closed["acknowledged"], closed["severity"]) == (
        "cleared",
        True,
        "MAJOR",
    )
    assert transitions == [
        (None, "active", "MINOR", "monitor"),
        ("active", "active", "MAJOR", "monitor"),
        ("active", "cleared", "MAJOR", "monitor"),
        ("cleared", "ok", "NO_ALARM", "monitor"),
        (None, "active", "MINOR", "monitor"),
    ]


def test_operator_actions_are_picked_up_in_order(engine_run) -> None:
    _, engine, run = engine_run
    alarm_id = store_run(engine, run, "beam_trip", [Severity.MAJOR])[0]
    with transaction(engine) as session:
        after = store.last_transition_id(session)
        assert store.acknowledge(session, [alarm_id], "Ann", T0) == 1
        assert store.acknowledge(session, [alarm_id], "Bob", T0) == 0  # already
        until = store.shelve(session, alarm_id, 90, "Bob", T0)
    with transaction(engine) as session:
        actions = store.operator_actions(session, [alarm_id], after)
        row = store.alarm_list(session)[0]
    assert [(a.kind, a.who) for a in actions] == [("acknowledge", "Ann"), ("shelve", "Bob")]
    assert actions[1].until == until == T0 + timedelta(seconds=90)
    assert row["state"] == "shelved" and row["acknowledged"]
    assert datetime.fromisoformat(row["shelved_until"]) == until
    with transaction(engine) as session, pytest.raises(ValueError, match="reserved"):
        store.acknowledge(session, [alarm_id], "monitor", T0)


def test_cli_lists_acknowledges_and_shelves(engine_run, capsys) -> None:
    url, engine, run = engine_run
    first = store_run(engine, run, "stuck_helicity", [Severity.MAJOR, Severity.NO_ALARM])[0]
    second = store_run(engine, run, "beam_trip", [Severity.MAJOR])[0]
    capsys.readouterr()
    assert main(["--db", url, "alarms", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["id"] for a in listed] == [second, first]
    for a in listed:
        assert {"id", "name", "severity", "state", "since", "message", "acknowledged"} <= set(a)
        assert a["severity"] in ("MINOR", "MAJOR", "INVALID", "NO_ALARM")
        assert datetime.fromisoformat(a["since"]).utcoffset() == timedelta(0)
    assert main(["--db", url, "alarms", "ack", str(first), "--who", "Ann"]) == 0
    assert main(["--db", url, "alarms", "shelve", str(second), "--for", "60"]) == 0
    capsys.readouterr()
    assert main(["--db", url, "alarms", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["name"], a["state"]) for a in listed] == [("beam_trip", "shelved")]
    assert main(["--db", url, "alarms", "--all", "--run", str(run)]) == 0
    text = capsys.readouterr().out
    assert "stuck_helicity" in text and "beam_trip" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alarms", "ack"], "needs the id"),
        (["alarms", "7"], "invalid choice: '7'"),
        (["alarms", "shelve", "1"], "--for SECONDS"),
        (["alarms", "shelve", "1", "2", "--for", "5"], "one id"),
        (["alarms", "ack", "1", "--for", "5"], "--for goes with"),
        (["alarms", "shelve", "1", "--for", "-5"], "positive"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as err:
        main(["--db", f"sqlite:///{tmp_path / 'x.db'}", *args])
    assert err.value.code == 2
    out = capsys.readouterr().err
    assert message in out and out.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alarms", "ack", "999"], "no alarm with id 999"),
        (["alarms", "shelve", "999", "--for", "5"], "no open alarm with id 999"),
    ],
)
def test_cli_unknown_alarm_exits_1(engine_run, capsys, args, message) -> None:
    url, _, _ = engine_run
    assert main(["--db", url, *args]) == 1
    out = capsys.readouterr().err
    assert message in out and out.count("\n") == 1


def test_an_ended_runs_alarms_close_with_it(engine_run, db_url) -> None:
    """A run's alarms still standing when it ends (an active one and a cleared one never
    acknowledged) are closed with a transition naming the end, and leave the list of
    alarms needing attention; another run's stay.  Before, nothing cleared them: they
    stood forever, even after ``mupnc alarms ack``."""
    _, engine, first = engine_run
    second = new_run(db_url, SourceConfig())
    major, ok = Severity.MAJOR, Severity.NO_ALARM
    standing = store_run(engine, first, "stuck_helicity", [major])[-1]
    latched = store_run(engine, first, "phase_error", [major, ok])[-1]
    other = store_run(engine, second, "beam_trip", [major])[-1]
    with transaction(engine) as session:
        assert {a["id"] for a in store.alarm_list(session)} == {standing, latched, other}
        assert store.close_run_alarms(session, first, T0 + timedelta(hours=1), "run ended") == 2
    with transaction(engine) as session:
        assert [a["id"] for a in store.alarm_list(session)] == [other]
        every = {a["id"]: a for a in store.alarm_list(session, closed=True)}
        assert every[standing]["state"] == "cleared" and every[standing]["acknowledged"]
        last = session.query(AlarmTransition).order_by(AlarmTransition.id.desc()).first()
        assert (last.to_state, last.reason, last.who) == ("cleared", "run ended", "monitor")
        assert store.close_run_alarms(session, first, T0, "again") == 0


def test_mupnc_alarms_shows_the_newest_runs_alarms_and_names_the_others(
    engine_run, db_url, capsys
) -> None:
    """A run that ended without its monitor (alarms still open) does not crowd the newest
    run's list; it is named on a line of its own, and ``--run`` shows it."""
    _, engine, old = engine_run
    newest = new_run(db_url, SourceConfig())
    major = Severity.MAJOR
    stale = store_run(engine, old, "stuck_helicity", [major])[-1]
    mine = store_run(engine, newest, "phase_error", [major])[-1]
    assert main(["--db", db_url, "alarms", "--json"]) == 0
    assert [a["id"] for a in json.loads(capsys.readouterr().out)] == [mine]
    assert main(["--db", db_url, "alarms"]) == 0
    text = capsys.readouterr().out
    assert f"run {newest} (the newest)" in text and f"run {newest}  phase_error" in text
    assert f"also open: 1 alarm(s) of run {old} (mupnc alarms --run {old})" in text
    assert main(["--db", db_url, "alarms", "--json", "--run", str(old)]) == 0
    assert [a["id"] for a in json.loads(capsys.readouterr().out)] == [stale]
