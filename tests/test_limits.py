"""Alarm limits with HYST, against EPICS base's aiRecord ``checkAlarms`` (pure and in a PVGroup)."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest
from caproto import AlarmStatus
from caproto.server import PVGroup

from mupnc.ioc.limits import INVALID, MAJOR, MINOR, NO_ALARM, AlarmLimits, check_limits
from mupnc.ioc.records import analog_readback

# The reference's worked example (epics.md §5): HIHI=100 MAJOR, HIGH=80 MINOR, LOW=10 MINOR,
# LOLO=2 MAJOR, HYST=1.
LIMITS = AlarmLimits(
    hihi=100, high=80, low=10, lolo=2, hhsv=MAJOR, hsv=MINOR, lsv=MINOR, llsv=MAJOR, hyst=1
)

# Each row: the values written in order, and the (STAT, SEVR) the record reports after each.
SEQUENCES = [
    # EPICS: 99.5 after 150 stays HIHI MAJOR (within HYST of HIHI); caproto alone says HIGH MINOR.
    ([1.0, 150, 99.5, 98.5], [("LOLO", MAJOR), ("HIHI", MAJOR), ("HIHI", MAJOR), ("HIGH", MINOR)]),
    # clearing HIGH needs val < HIGH - HYST; entering needs val >= HIGH
    (
        [50, 80, 79.5, 79.0, 78.9, 79.5],
        [("NO_ALARM", 0), ("HIGH", 1), ("HIGH", 1), ("HIGH", 1), ("NO_ALARM", 0), ("NO_ALARM", 0)],
    ),
    # low side mirrors the high side
    (
        [50, 10, 10.9, 11.0, 11.1],
        [("NO_ALARM", 0), ("LOW", 1), ("LOW", 1), ("LOW", 1), ("NO_ALARM", 0)],
    ),
    (
        [50, 2, 2.5, 3.0, 3.5, 12],
        [("NO_ALARM", 0), ("LOLO", 2), ("LOLO", 2), ("LOLO", 2), ("LOW", 1), ("NO_ALARM", 0)],
    ),
    # a jump straight from HIHI to normal clears at once
    ([120, 50], [("HIHI", 2), ("NO_ALARM", 0)]),
    # NaN is undefined (UDF, INVALID); LALM is kept
    ([150, math.nan, 99.5], [("HIHI", 2), ("UDF", INVALID), ("HIHI", 2)]),
]


def run_sequence(values: list[float], limits: AlarmLimits) -> list[tuple[str, int]]:
    lalm, seen = math.nan, []
    for v in values:
        outcome = check_limits(v, limits, lalm)
        lalm = outcome.last_alarmed
        seen.append((outcome.status, outcome.severity))
    return seen


@pytest.mark.parametrize(("values", "expected"), SEQUENCES)
def test_check_limits_follows_the_ai_record(values, expected):
    assert run_sequence(values, LIMITS) == expected


def test_a_limit_with_severity_no_alarm_is_disabled():
    only_low = AlarmLimits(hihi=100, high=80, low=10, lolo=2, lsv=MINOR, llsv=NO_ALARM, hyst=1)
    assert run_sequence([150, 90, 5, 1], only_low) == [
        ("NO_ALARM", 0),
        ("NO_ALARM", 0),
        ("LOW", MINOR),
        ("LOW", MINOR),
    ]


def test_zero_hysteresis_is_plain_limit_checking():
    no_hyst = dataclasses.replace(LIMITS, hyst=0.0)
    assert run_sequence([150, 99.5, 79.9], no_hyst) == [("HIHI", 2), ("HIGH", 1), ("NO_ALARM", 0)]


class _Record(PVGroup):
    value = analog_readback("VAL", "test record", "mm", limits=LIMITS)


@pytest.mark.parametrize(("values", "expected"), SEQUENCES)
def test_analog_readback_publishes_the_hysteretic_alarm(values, expected):
    """The caproto PV (its .SEVR/.STAT as served) follows the same table."""
    record = _Record(prefix="T:")

    async def write_all():
        seen = []
        for v in values:
            await record.value.write(v)
            alarm = record.value.alarm
            seen.append((AlarmStatus(alarm.status).name, int(alarm.severity)))
        return seen

    assert asyncio.run(write_all()) == expected


def test_writing_hyst_field_changes_the_behaviour():
    record = _Record(prefix="T:")

    async def scenario():
        await record.value.field_inst.alarm_deadband.write(0.0)
        await record.value.write(150)
        await record.value.write(99.5)
        return int(record.value.alarm.severity)

    assert asyncio.run(scenario()) == MINOR
