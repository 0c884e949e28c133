"""Every PV the IOC and the monitor serve is an EPICS record (no Channel Access: the PV
groups the servers are built from): a record type, .DESC of at most 40 characters by
design, .EGU its units, .HOPR/.LOPR its display limits, and INVALID/UDF until a value."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.server import pvproperty

from mupnc.daq.record_fields import (
    ALARM_STATUS,
    DESC_CHARS,
    DescriptionTooLongError,
    RecordGroup,
    description,
    meaning,
)
from mupnc.ioc.server import GROUPS
from mupnc.monitor.alarms.rules import load_rules
from mupnc.pv_list import ioc_channels, monitor_channels
from mupnc.sim.source import SourceConfig


@pytest.fixture(scope="module")
def channels() -> dict:
    return {
        **ioc_channels("L:", SourceConfig(), 20.0, GROUPS),
        **monitor_channels("L:", load_rules()),
    }


def test_every_pv_is_a_record_with_its_description_units_and_limits(channels) -> None:
    assert len(channels) > 500
    for name, channel in channels.items():
        fields = channel.field_inst
        assert fields is not None, name
        assert channel.record_type, name
        desc = description(channel.pvspec.doc)
        assert 0 < len(desc) <= DESC_CHARS, name
        assert channel.__doc__ == desc, name
        if "EGU" in fields.pvdb:
            assert fields.engineering_units.value == (getattr(channel, "units", "") or ""), name
        if "HOPR" in fields.pvdb:
            _, hopr = asyncio.run(fields.high_operating_range.read(ChannelType.DOUBLE))
            assert hopr[0] == getattr(channel, "upper_disp_limit", 0), name
        if "DRVH" in fields.pvdb:
            assert fields.drive_high_limit.value == channel.upper_ctrl_limit, name
        if channel.record_type in ("ai", "longin"):
            ctrl, _ = asyncio.run(channel.read(ChannelType.CTRL_DOUBLE))
            limits = (ctrl.lower_ctrl_limit, ctrl.upper_ctrl_limit)
            assert limits == (ctrl.lower_disp_limit, ctrl.upper_disp_limit), name
    assert len({id(channel.alarm) for channel in channels.values()}) == len(channels)


def stat_as_clients_read_it(channel: Any) -> tuple[int, str, tuple[str, ...]]:
    """A PV's ``.STAT`` as DBR_TIME_ENUM, as DBR_STRING, and the names DBR_CTRL_ENUM
    carries."""
    stat = channel.field_inst.alarm_status
    _, index = asyncio.run(stat.read(ChannelType.TIME_ENUM))
    _, name = asyncio.run(stat.read(ChannelType.STRING))
    ctrl, _ = asyncio.run(stat.read(ChannelType.CTRL_ENUM))
    return index[0], name[0].decode(), tuple(s.decode() for s in ctrl.enum_strings)


def test_read_only_pvs_are_invalid_udf_until_written(channels) -> None:
    readback = channels["L:BEAM:MOMENTUM"]
    assert (readback.status, readback.severity) == (
        AlarmStatus.UDF,
        AlarmSeverity.INVALID_ALARM,
    )
    assert readback.field_inst.undefined.value == b"\x01"
    assert stat_as_clients_read_it(readback) == (17, "UDF", ALARM_STATUS[:16])
    asyncio.run(readback.write(28.0))
    assert (readback.status, readback.severity) == (AlarmStatus.NO_ALARM, 0)
    assert stat_as_clients_read_it(readback)[:2] == (0, "NO_ALARM")
    assert readback.field_inst.undefined.value == b"\x00"
    asyncio.run(readback.write(math.nan))
    assert readback.field_inst.undefined.value == b"\x01"  # a NaN is no value
    setpoint = channels["L:BEAM:RATE_SP"]
    assert (setpoint.severity, setpoint.field_inst.undefined.value) == (0, b"\x00")


def test_a_long_description_is_refused_and_a_long_meaning_kept() -> None:
    doc = "Short description\nA longer meaning, for the listing"
    assert (description(doc), meaning(doc)) == (
        "Short description",
        "A longer meaning, for the listing",
    )
    long = type("Long", (RecordGroup,), {"pv": pvproperty(value=0.0, name="PV", doc="x" * 41)})
    with pytest.raises(DescriptionTooLongError, match="41 > 40"):
        long(prefix="L:")
