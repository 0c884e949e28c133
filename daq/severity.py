"""Alarm severities: the one vocabulary of the IOCs' records, the monitor's alarms, the
database and the dashboards.  The values are EPICS's (``alarm.h``; caproto's
``AlarmSeverity`` has the same numbers), so ``Severity(record.severity)`` and
``int(severity)`` cross Channel Access unchanged."""

from __future__ import annotations

from enum import IntEnum


class Severity(IntEnum):
    """EPICS alarm severity, ordered: a larger value is worse."""

    NO_ALARM = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3
