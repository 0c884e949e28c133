"""Alarms in the database: the list, operator actions (acknowledge, shelve) and the
monitor's transitions.  The one place that writes :class:`Alarm` and :class:`AlarmTransition`.

One :class:`Alarm` row per occurrence: opened when an alarm leaves OK, updated as it
changes, and closed when it is OK again, stored as ``state = cleared`` with
``acknowledged`` true (severity: the last one shown).  ``state`` is ``active`` (condition
present), ``cleared`` (gone, latched until acknowledged) or ``shelved``.  Every change is an
:class:`AlarmTransition`; ``who`` is ``monitor`` for the alarm service, else the operator.

Operators act on the rows directly (so ``mupnc alarms`` shows the action at once, with or
without a monitor running); a running monitor picks the actions up from their transitions
(:func:`operator_actions`) and re-evaluates (e.g. re-latches an acknowledged alarm whose
condition persists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, not_, or_, select
from sqlalchemy.orm import Session

from mupnc.db.models import Alarm, AlarmTransition

MONITOR = "monitor"
ACTIVE, CLEARED, SHELVED = "active", "cleared", "shelved"
CLOSED = and_(Alarm.state == CLEARED, Alarm.acknowledged)
"""An occurrence that needs nothing more: cleared and acknowledged."""


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def alarm_list(
    session: Session, run: int | None = None, closed: bool = False, runless: bool = False
) -> list[dict]:
    """Alarms newest first as ``alarms --json`` gives them (docs/reference.md, 'JSON for scripts');
    only those still needing attention unless ``closed``; of run ``run`` (and, with
    ``runless``, those of no run) if given."""
    query = select(Alarm).order_by(Alarm.since.desc(), Alarm.id.desc())
    if run is not None:
        mine = Alarm.run == run
        query = query.where(or_(mine, Alarm.run.is_(None)) if runless else mine)
    if not closed:
        query = query.where(not_(CLOSED))
    return [
        {
            "id": a.id,
            "name": a.name,
            "severity": a.severity,
            "state": a.state,
            "since": _iso(a.since),
            "message": a.message,
            "acknowledged": a.acknowledged,
            "run": a.run,
            "shelved_until": _iso(a.shelved_until),
        }
        for a in session.scalars(query)
    ]


def _operator(who: str) -> str:
    who = who.strip()[:64] or "shifter"
    if who == MONITOR:
        raise ValueError(f"operator name {MONITOR!r} is reserved for the alarm service")
    return who


def _transition(alarm: Alarm, to_state: str, now: datetime, reason: str, who: str):
    return AlarmTransition(
        alarm_id=alarm.id,
        time=now,
        from_state=alarm.state,
        to_state=to_state,
        from_severity=alarm.severity,
        to_severity=alarm.severity,
        reason=reason,
        who=who,
    )


def acknowledge(
    session: Session, ids: Sequence[int], who: str, now: datetime, reason: str = "acknowledged"
) -> int:
    """Acknowledge the alarms ``ids`` not yet acknowledged, as ``who``; returns how many.

    A cleared alarm is thereby closed; an active one stays until its condition goes."""
    who = _operator(who)
    alarms = session.scalars(
        select(Alarm).where(Alarm.id.in_(list(ids)), not_(Alarm.acknowledged))
    ).all()
    for alarm in alarms:
        session.add(_transition(alarm, alarm.state, now, reason, who))
        alarm.acknowledged = True
    return len(alarms)


def shelve(session: Session, alarm_id: int, seconds: float, who: str, now: datetime) -> datetime:
    """Shelve an open alarm for ``seconds``; returns when the shelf expires.

    Raises ``LookupError`` for an unknown or closed alarm."""
    who = _operator(who)
    alarm = session.get(Alarm, alarm_id)
    if alarm is None or (alarm.state == CLEARED and alarm.acknowledged):
        raise LookupError(f"no open alarm with id {alarm_id}")
    until = now + timedelta(seconds=seconds)
    session.add(_transition(alarm, SHELVED, now, f"shelved for {seconds:g} s", who))
    alarm.state, alarm.shelved_until = SHELVED, until
    return until


def ensure_exist(session: Session, ids: Sequence[int]) -> None:
    """Raise ``LookupError`` naming the first of ``ids`` that is no alarm."""
    found = set(session.scalars(select(Alarm.id).where(Alarm.id.in_(list(ids)))))
    missing = [i for i in ids if i not in found]
    if missing:
        raise LookupError(f"no alarm with id {missing[0]}")


# -- the alarm service's side --------------------------------------------------------------


@dataclass(frozen=True)
class OperatorAction:
    transition_id: int
    alarm_id: int
    kind: str  # "acknowledge" or "shelve"
    who: str
    until: datetime | None  # shelve: when the shelf expires


def operator_actions(
    session: Session, alarm_ids: Sequence[int], after: int
) -> list[OperatorAction]:
    """Operator transitions of these alarms with an id above ``after``, in order."""
    if not alarm_ids:
        return []
    rows = session.execute(
        select(AlarmTransition, Alarm.shelved_until)
        .join(Alarm, Alarm.id == AlarmTransition.alarm_id)
        .where(
            AlarmTransition.id > after,
            AlarmTransition.who != MONITOR,
            AlarmTransition.alarm_id.in_(list(alarm_ids)),
        )
        .order_by(AlarmTransition.id)
    ).all()
    return [
        OperatorAction(
            t.id,
            t.alarm_id,
            "shelve" if t.to_state == SHELVED else "acknowledge",
            t.who,
            until if t.to_state == SHELVED else None,
        )
        for t, until in rows
    ]


def close_run_alarms(session: Session, run: int, now: datetime, reason: str) -> int:
    """Close every occurrence of ``run`` not closed yet (the run is over: nothing will clear
    them any more), each with a transition giving ``reason``; returns how many."""
    alarms = open_alarms(session, run)
    for alarm in alarms:
        session.add(_transition(alarm, CLEARED, now, reason, MONITOR))
        alarm.state, alarm.acknowledged, alarm.shelved_until = CLEARED, True, None
    return len(alarms)


def open_elsewhere(session: Session, run: int) -> dict[int, int]:
    """Runs other than ``run`` with alarms still needing attention: run -> how many."""
    rows = session.execute(
        select(Alarm.run, func.count())
        .where(not_(CLOSED), Alarm.run.is_not(None), Alarm.run != run)
        .group_by(Alarm.run)
    ).all()
    return {int(r): int(n) for r, n in rows}


def last_transition_id(session: Session) -> int:
    return session.scalar(select(func.max(AlarmTransition.id))) or 0


def open_alarms(session: Session, run: int) -> list[Alarm]:
    """The run's occurrences not closed (for a restarted alarm service)."""
    return list(
        session.scalars(select(Alarm).where(Alarm.run == run, not_(CLOSED)).order_by(Alarm.id))
    )


def record_transition(
    session: Session,
    alarm_id: int | None,
    run: int,
    name: str,
    now: datetime,
    transition,
    message: str,
) -> int | None:
    """Store one :class:`mupnc.monitor.alarms.logic.Transition` of alarm ``name``: opens a row for
    a new occurrence (``alarm_id`` None), closes it when the alarm is OK again.  Returns
    the occurrence's id, None once closed."""
    closing = transition.to_state == "ok"
    if alarm_id is None:
        alarm = Alarm(run=run, name=name, since=now, severity="NO_ALARM", state=CLEARED)
        alarm.acknowledged, alarm.message = False, message
        session.add(alarm)
        session.flush()
    else:
        alarm = session.get(Alarm, alarm_id)
    shelving = SHELVED in (transition.from_state, transition.to_state)
    session.add(
        AlarmTransition(
            alarm_id=alarm.id,
            time=now,
            from_state=None if alarm_id is None else transition.from_state,
            to_state=transition.to_state,
            from_severity=None if alarm_id is None else transition.from_severity.name,
            to_severity=transition.to_severity.name,
            reason=transition.reason,
            who=MONITOR,
        )
    )
    if not closing:
        alarm.severity = transition.to_severity.name
    alarm.state = CLEARED if closing else transition.to_state
    alarm.acknowledged = closing or transition.acknowledged
    alarm.message = message
    if shelving and transition.to_state != SHELVED:
        alarm.shelved_until = None
    return None if closing else alarm.id
