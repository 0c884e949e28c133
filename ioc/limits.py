"""Alarm-limit evaluation of an analog record, with EPICS HYST semantics (pure; no CA).

caproto checks HIHI/HIGH/LOW/LOLO without hysteresis.  This is the logic of EPICS base's
``aiRecord.c`` ``checkAlarms`` (without the AFTC filter): the alarm range is the first
of HIHI, LOLO, HIGH, LOW whose severity is not NO_ALARM and which the value is beyond,
or, if that limit raised the last alarm (``LALM``, the *last value alarmed*), has not
yet cleared by ``HYST``::

    HIHI if HHSV and (val >= HIHI or (LALM == HIHI and val >= HIHI - HYST))
    LOLO if LLSV and (val <= LOLO or (LALM == LOLO and val <= LOLO + HYST))
    HIGH if HSV  and (val >= HIGH or (LALM == HIGH and val >= HIGH - HYST))
    LOW  if LSV  and (val <= LOW  or (LALM == LOW  and val <= LOW  + HYST))

An alarm sets ``LALM`` to its limit; a normal value sets ``LALM = val``.  A NaN value is
undefined: status UDF with severity INVALID (the record's default UDFS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mupnc.daq.severity import Severity

NO_ALARM, MINOR, MAJOR, INVALID = Severity


@dataclass(frozen=True, slots=True)
class AlarmLimits:
    """Limits and severities of one analog record (EPICS field names in comments)."""

    hihi: float = 0.0  # HIHI
    high: float = 0.0  # HIGH
    low: float = 0.0  # LOW
    lolo: float = 0.0  # LOLO
    hhsv: int = NO_ALARM  # HHSV
    hsv: int = NO_ALARM  # HSV
    lsv: int = NO_ALARM  # LSV
    llsv: int = NO_ALARM  # LLSV
    hyst: float = 0.0  # HYST, in engineering units


@dataclass(frozen=True, slots=True)
class LimitAlarm:
    """Outcome of one evaluation: alarm status name (``STAT``), severity, and the new LALM."""

    status: str
    severity: Severity
    last_alarmed: float


def check_limits(value: float, limits: AlarmLimits, last_alarmed: float) -> LimitAlarm:
    """Alarm status and severity of ``value`` given the previous ``LALM``."""
    if math.isnan(value):
        return LimitAlarm("UDF", INVALID, last_alarmed)
    lim = limits
    ranges = (
        ("HIHI", lim.hihi, lim.hhsv, value >= lim.hihi, value >= lim.hihi - lim.hyst),
        ("LOLO", lim.lolo, lim.llsv, value <= lim.lolo, value <= lim.lolo + lim.hyst),
        ("HIGH", lim.high, lim.hsv, value >= lim.high, value >= lim.high - lim.hyst),
        ("LOW", lim.low, lim.lsv, value <= lim.low, value <= lim.low + lim.hyst),
    )
    for status, limit, severity, beyond, within_hysteresis in ranges:
        if severity and (beyond or (last_alarmed == limit and within_hysteresis)):
            return LimitAlarm(status, Severity(severity), limit)
    return LimitAlarm("NO_ALARM", NO_ALARM, value)
