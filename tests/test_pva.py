"""The monitor's PVs over pvAccess (:mod:`mupnc.monitor.pva`), without Channel Access: the
mirror is built from the caproto PV groups the CA server would serve, written as the
monitor writes them, and read back with p4p's client on a loopback port of its own."""

from __future__ import annotations

import asyncio
import math

import pytest
from caproto import AlarmSeverity, AlarmStatus
from p4p.client.thread import Context
from support.waiting import wait_for

from mupnc.epics_env import free_port
from mupnc.monitor.alarms.logic import AlarmStatus as Status
from mupnc.monitor.alarms.pvs import alarm_pv_group, write_alarm_pvs
from mupnc.monitor.feedback.service import FeedbackRequests
from mupnc.monitor.publisher import result_pv_groups
from mupnc.monitor.pva import (
    EPICS_EPOCH_POSIX,
    MINIRUN_COLUMNS,
    PvaMirror,
    minirun_rows,
    snapshot,
)
from mupnc.pv_list import monitor_channels

PREFIX = "PVA:"


@pytest.fixture
def served():
    """The monitor's PV groups (results, beam, feedback, two alarms), mirrored over
    pvAccess on a free loopback port, and a client that reaches only that port."""
    groups = [*result_pv_groups(PREFIX, FeedbackRequests())]
    groups.append(alarm_pv_group(PREFIX, ["beam_trip", "stuck_helicity"]))
    pvdb: dict = {}
    for group in groups:
        pvdb.update(group.pvdb)
    port = free_port()
    conf = {
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_SERVER_PORT": str(port),
        "EPICS_PVAS_BROADCAST_PORT": str(port),
    }
    mirror = PvaMirror(PREFIX, pvdb, {n: snapshot(c) for n, c in pvdb.items()}, conf)
    client = Context(
        "pva",
        conf={"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{port}", "EPICS_PVA_AUTO_ADDR_LIST": "NO"},
        useenv=False,
    )
    loop = asyncio.new_event_loop()

    def write(coroutine) -> None:
        """Write as the publisher does, then post what changed (as its ``submit``)."""
        loop.run_until_complete(coroutine)
        mirror.post({n: snapshot(c) for n, c in pvdb.items()})

    yield groups, pvdb, mirror, client, write
    client.close()
    mirror.close()
    loop.close()


def posix(value) -> float:
    stamp = value.raw.timeStamp
    return stamp.secondsPastEpoch + stamp.nanoseconds * 1e-9


def test_every_monitor_pv_is_served_under_its_ca_name(served) -> None:
    """The mirror's names are the CA server's, from its own PV groups, plus the table."""
    _, pvdb, mirror, client, _ = served
    assert set(mirror.pvs) == set(pvdb)
    listed = monitor_channels(PREFIX, _two_rules())
    assert set(listed) == set(pvdb)
    names = [*sorted(pvdb), f"{PREFIX}MON:MINIRUNS"]
    values = client.get(names, timeout=10, throw=False)
    failed = [n for n, v in zip(names, values, strict=True) if isinstance(v, Exception)]
    assert failed == []


def _two_rules():
    from dataclasses import replace

    from mupnc.monitor.alarms.rules import load_rules

    shipped = load_rules()
    keep = tuple(r for r in shipped.rules if r.name in ("beam_trip", "stuck_helicity"))
    assert len(keep) == 2
    return replace(shipped, rules=keep)


def test_asymmetry_carries_value_alarm_timestamp_and_display(served) -> None:
    groups, pvdb, _, client, write = served
    results, beam = groups[0], groups[1]
    asym = client.get(f"{PREFIX}MON:ASYM", timeout=10)
    assert math.isnan(asym)  # nothing analysed yet

    write(results.asym.write(1.5e-3, status=AlarmStatus.NO_ALARM, severity=0))
    asym = client.get(f"{PREFIX}MON:ASYM", timeout=10)
    channel = pvdb[f"{PREFIX}MON:ASYM"]
    assert float(asym) == 1.5e-3 and asym.severity == 0
    assert asym.raw.alarm.status == 0 and asym.raw.alarm.message == ""
    assert abs(posix(asym) - channel.timestamp) < 1e-6  # the CA write's time, to the us
    assert asym.raw.display.precision == 8
    assert asym.raw.display.description == "Running combined physics asymmetry"  # .DESC

    undefined = {"status": AlarmStatus.UDF, "severity": AlarmSeverity.INVALID_ALARM}
    write(results.chi2_ndf.write(math.nan, **undefined))
    chi2 = client.get(f"{PREFIX}MON:CHI2_NDF", timeout=10)
    assert math.isnan(chi2) and chi2.severity == 3
    assert (chi2.raw.alarm.status, chi2.raw.alarm.message) == (2, "UDF")  # QSRV: DRIVER

    write(beam.x_diff.write(12.5, status=AlarmStatus.NO_ALARM, severity=0))
    x = client.get(f"{PREFIX}MON:BEAM:X:DIFF", timeout=10)
    assert float(x) == 12.5 and x.raw.display.units == "nm"

    write(results.estimator.write("COUNTING"))
    estimator = client.get(f"{PREFIX}MON:ESTIMATOR", timeout=10)
    assert estimator.raw.value.choices == ["INTEGRATING", "COUNTING"]
    assert estimator.raw.value.index == 1

    write(results.helicity_errors.write([1, 2, 3, 0, 0, 0, 0, 0, 0, 0]))
    errors = client.get(f"{PREFIX}MON:HEL_ERRORS", timeout=10)
    assert list(errors) == [1, 2, 3, 0, 0, 0, 0, 0, 0, 0]
    write(beam.slope_channels.write("scat_0,combined"))
    assert client.get(f"{PREFIX}MON:BEAM:SLOPE_CHANNELS", timeout=10) == "scat_0,combined"


def test_alarm_pvs_carry_the_alarm_severity(served) -> None:
    groups, _, _, client, write = served
    from mupnc.daq.severity import Severity
    from mupnc.monitor.alarms.logic import ACTIVE

    status = Status(condition=Severity.MAJOR, latched=Severity.MAJOR)
    assert status.state == ACTIVE
    statuses = {"beam_trip": status, "stuck_helicity": Status()}
    write(write_alarm_pvs(groups[-1], statuses, {"beam_trip"}, "beam_trip"))
    alarm = client.get(f"{PREFIX}MON:ALARM:BEAM_TRIP", timeout=10)
    assert alarm.raw.value.choices[alarm.raw.value.index] == "ACTIVE"
    assert alarm.severity == 2 and alarm.raw.alarm.message == "STATE"
    summary = client.get(f"{PREFIX}MON:ALARM:SUMMARY", timeout=10)
    assert summary.severity == 2
    assert client.get(f"{PREFIX}MON:ALARM:TOP", timeout=10) == "beam_trip"


def test_updates_reach_a_subscriber_once_per_post(served) -> None:
    """A monitor (``pvmonitor``, Phoebus) sees each write; an unchanged PV is not reposted."""
    groups, pvdb, mirror, client, write = served
    seen: list[float] = []
    subscription = client.monitor(f"{PREFIX}MON:ASYM", lambda v: seen.append(float(v)))
    try:
        wait_for(lambda: len(seen) >= 1, 10, "the first update")
        for value in (1e-3, 2e-3):
            write(groups[0].asym.write(value, status=AlarmStatus.NO_ALARM, severity=0))
        wait_for(lambda: seen[-1] == 2e-3, 10, "MON:ASYM = 2e-3")
        assert 1e-3 in seen
        assert mirror.post({n: snapshot(c) for n, c in pvdb.items()}) == 0  # nothing moved
    finally:
        subscription.close()


def test_puts_are_refused(served) -> None:
    _, _, _, client, _ = served
    with pytest.raises(Exception, match="read-only over pvAccess"):
        client.put(f"{PREFIX}MON:FB:CHARGE:MODE", "ON", timeout=10)


def test_miniruns_table(served) -> None:
    from test_publisher import steered_result

    _, _, mirror, client, _ = served
    result = steered_result()
    rows = minirun_rows(result)
    assert len(rows) == len(result.miniruns) >= 1
    mirror.post_miniruns(rows)
    table = client.get(f"{PREFIX}MON:MINIRUNS", timeout=10)
    assert list(table.labels) == [name for name, _, _ in MINIRUN_COLUMNS]
    assert list(table.value.minirun) == list(range(len(rows)))
    assert list(table.value.asymmetry) == [m.combined.value for m in result.miniruns]
    assert list(table.value.error) == [m.combined.error for m in result.miniruns]
    assert list(table.value.patterns) == [m.patterns_good for m in result.miniruns]
    assert table.timeStamp.secondsPastEpoch > EPICS_EPOCH_POSIX
