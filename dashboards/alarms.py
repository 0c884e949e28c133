"""Alarms on the shifter page: read the alarms to show, pick the banner, acknowledge.

An alarm stays on the page while it is not cleared, and after clearing until someone
acknowledges it (latching, as in Phoebus).  Acknowledging sets ``Alarm.acknowledged`` and
records an :class:`~mupnc.db.models.AlarmTransition` with the operator's name; the alarm's state
is left to the alarm logic.  Names and messages are shown as text, never as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, not_, or_, select
from sqlalchemy.orm import Session

from mupnc.dashboards.queries import utc
from mupnc.db import alarms as db_alarms
from mupnc.db.models import Alarm

SEVERITY_RANK = {"NO_ALARM": 0, "MINOR": 1, "MAJOR": 2, "INVALID": 3}
SEVERITY_STYLE = {
    "MINOR": ("#EBEB00", "black"),
    "MAJOR": ("#FF0000", "white"),
    "INVALID": ("#EB00EB", "white"),
    "NO_ALARM": ("#1a7f1a", "white"),
}
"""(background, text) colours per EPICS severity, as PyDM draws them."""
CLEARED, SHELVED = "cleared", "shelved"
MAX_SHOWN = 200


@dataclass(frozen=True)
class AlarmRecord:
    """One alarm as the page shows it (times UTC)."""

    id: int
    name: str
    severity: str
    state: str
    since: datetime
    message: str
    acknowledged: bool
    shelved_until: datetime | None
    run: int | None = None
    """The run the alarm belongs to (None: of no run)."""


def displayed_alarms(session: Session, run: int | None = None) -> tuple[AlarmRecord, ...]:
    """Alarms not (cleared and acknowledged) of run ``run`` and of no run (None: of every
    run), most severe first, then newest first."""
    query = select(Alarm).where(not_(and_(Alarm.state == CLEARED, Alarm.acknowledged)))
    if run is not None:
        query = query.where(or_(Alarm.run == run, Alarm.run.is_(None)))
    rows = session.scalars(query.order_by(Alarm.since.desc()).limit(MAX_SHOWN)).all()
    records = [
        AlarmRecord(
            a.id,
            a.name,
            a.severity,
            a.state,
            utc(a.since),
            a.message or "",
            a.acknowledged,
            None if a.shelved_until is None else utc(a.shelved_until),
            a.run,
        )
        for a in rows
    ]
    records.sort(key=lambda a: -SEVERITY_RANK.get(a.severity, 3))  # stable: newest first within
    return tuple(records)


def is_shelved(alarm: AlarmRecord, now: datetime) -> bool:
    return alarm.state == SHELVED or (alarm.shelved_until is not None and alarm.shelved_until > now)


def banner_alarm(alarms: Sequence[AlarmRecord], now: datetime) -> AlarmRecord | None:
    """The alarm for the banner: the most severe standing (not cleared, not shelved) alarm,
    unacknowledged before acknowledged, newest first; None when nothing stands."""
    standing = [
        a
        for a in alarms
        if a.state != CLEARED and not is_shelved(a, now) and SEVERITY_RANK.get(a.severity, 3)
    ]
    if not standing:
        return None
    return max(
        standing,
        key=lambda a: (SEVERITY_RANK.get(a.severity, 3), not a.acknowledged, a.since),
    )


def banner_text(alarms: Sequence[AlarmRecord], now: datetime) -> tuple[str, str]:
    """(plain text, severity) of the banner; ``NO_ALARM`` when nothing stands."""
    top = banner_alarm(alarms, now)
    if top is None:
        return _latched_text(alarms, now)
    others = sum(1 for a in alarms if a.state != CLEARED and not is_shelved(a, now)) - 1
    text = f"{top.severity}: {top.name}" + ("" if top.run is None else f" (run {top.run})")
    if top.message:
        text += f" — {top.message}"
    text += f" (since {top.since:%H:%M:%S} UTC"
    text += ", acknowledged)" if top.acknowledged else ", NOT ACKNOWLEDGED)"
    if others > 0:
        text += f"  +{others} more"
    return text, top.severity


def _latched_text(alarms: Sequence[AlarmRecord], now: datetime) -> tuple[str, str]:
    """The banner when nothing stands: a cleared alarm nobody acknowledged yet is latched
    (it must not pass unseen), in its own severity's colours; else ``No active alarms``."""
    latched = [
        a for a in alarms if a.state == CLEARED and not a.acknowledged and not is_shelved(a, now)
    ]
    if not latched:
        return "No active alarms", "NO_ALARM"
    top = max(latched, key=lambda a: (SEVERITY_RANK.get(a.severity, 3), a.since))
    severity = top.severity if SEVERITY_RANK.get(top.severity, 0) else "MINOR"
    text = f"No active alarms; cleared, NOT ACKNOWLEDGED: {top.name}"
    text += ("" if top.run is None else f" (run {top.run})") + f" {top.severity}"
    text += f" (since {top.since:%H:%M:%S} UTC): acknowledge it below"
    if len(latched) > 1:
        text += f"  +{len(latched) - 1} more"
    return text, severity


def acknowledge(session: Session, ids: Sequence[int], who: str, now: datetime) -> int:
    """Acknowledge the alarms ``ids`` not yet acknowledged, as ``who``; returns how many
    (:func:`mupnc.db.alarms.acknowledge`, which a running monitor's alarm service picks up)."""
    return db_alarms.acknowledge(session, ids, who, now, reason="acknowledged on the dashboard")
