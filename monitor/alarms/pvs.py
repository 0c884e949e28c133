"""The alarm PVs the monitor serves beside its results (``{prefix}MON:ALARM:...``).

* ``MON:ALARM:<NAME>`` (enum OK, ACTIVE, ACKED, CLEARED, SHELVED): one per rule; its
  record severity is the alarm's shown severity (NO_ALARM while shelved or OK), status
  STATE;
* ``MON:ALARM:SUMMARY`` (enum NO_ALARM, MINOR, MAJOR, INVALID): highest severity of the
  standing (not shelved) alarms, also as its record severity;
* ``MON:ALARM:COUNT``, ``MON:ALARM:UNACKED``: standing alarms, and those not acknowledged;
* ``MON:ALARM:TOP``: name of the most severe standing alarm ("" when none).

Each PV has its own caproto alarm instance (``alarm_group``), so severities do not leak
from one PV to another.
"""

from __future__ import annotations

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import PVGroup, pvproperty

from mupnc.daq.record_fields import RecordGroup
from mupnc.daq.severity import Severity
from mupnc.monitor.alarms.logic import ACTIVE, CLEARED, OK, SHELVED
from mupnc.monitor.alarms.logic import AlarmStatus as Status

PV_STATES = ["OK", "ACTIVE", "ACKED", "CLEARED", "SHELVED"]


def pv_state(status: Status) -> str:
    """The enum state of an alarm's PV."""
    state = status.state
    if state == ACTIVE:
        return "ACKED" if status.acknowledged else "ACTIVE"
    return {OK: "OK", CLEARED: "CLEARED", SHELVED: "SHELVED"}[state]


def _enum(name: str, states: list[str], doc: str) -> pvproperty:
    return pvproperty(
        value=states[0],
        name=name,
        dtype=ChannelType.ENUM,
        enum_strings=states,
        read_only=True,
        alarm_group=name,
        doc=doc,
    )


def alarm_pv_group(prefix: str, names: list[str]) -> PVGroup:
    """A PV group for the alarms ``names`` (rule names) under ``{prefix}MON:``."""
    attrs = {
        f"alarm_{name}": _enum(f"ALARM:{name.upper()}", PV_STATES, f"Alarm {name}")
        for name in names
    }
    attrs["alarm_summary"] = _enum(
        "ALARM:SUMMARY", [s.name for s in Severity], "Highest severity of standing alarms"
    )
    for attr, pv, doc in (
        ("alarm_count", "ALARM:COUNT", "Standing alarms (not shelved)"),
        ("alarm_unacked", "ALARM:UNACKED", "Standing alarms not acknowledged"),
    ):
        attrs[attr] = pvproperty(value=0, name=pv, read_only=True, alarm_group=pv, doc=doc)
    attrs["alarm_top"] = pvproperty(
        value="",
        name="ALARM:TOP",
        dtype=ChannelType.STRING,
        read_only=True,
        alarm_group="ALARM:TOP",
        doc="Most severe standing alarm",
    )
    return type("AlarmGroup", (RecordGroup,), attrs)(prefix=prefix + "MON:")


async def write_alarm_pvs(
    group: PVGroup, statuses: dict[str, Status], changed: set[str], top: str
) -> None:
    """Write the PVs of the ``changed`` alarms and the summary (inside the server loop)."""
    for name in changed:
        status = statuses[name]
        shown = Severity.NO_ALARM if not status.standing else status.latched
        await getattr(group, f"alarm_{name}").write(pv_state(status), **_alarm(shown))
    standing = [s for s in statuses.values() if s.standing]
    summary = max((s.latched for s in standing), default=Severity.NO_ALARM)
    await group.alarm_summary.write(summary.name, **_alarm(summary))
    await group.alarm_count.write(len(standing))
    await group.alarm_unacked.write(sum(not s.acknowledged for s in standing))
    await group.alarm_top.write(top)


def _alarm(severity: Severity) -> dict:
    status = AlarmStatus.STATE if severity else AlarmStatus.NO_ALARM
    return {"severity": AlarmSeverity(int(severity)), "status": status}
