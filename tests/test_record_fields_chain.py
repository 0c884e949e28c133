"""Over Channel Access, as an archiver or a display reads them: every PV ``mupnc pvs``
lists, of a running demo (IOC and monitor), has ``.DESC`` equal to the listing's
description, ``.EGU`` its units, ``.PREC`` and ``.HOPR``/``.LOPR`` equal to what DBR_CTRL
gives (``get_ctrlvars``), ``.SEVR``/``.STAT`` (UDF, 17, only while INVALID), and ``.UDF`` 1
only while INVALID; a
numbered family is read at its first and last member."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from support.ca_client import caget_elsewhere
from support.waiting import wait_for
from test_attach_chain import expand, free_pair

from mupnc.ioc.server import GROUPS
from mupnc.monitor.alarms.rules import load_rules
from mupnc.pv_list import IOC, MONITOR, ioc_channels, monitor_channels, pv_lines
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

PREFIX = "MUPNC:"
FIELDS = ("RTYP", "DESC", "EGU", "PREC", "HOPR", "LOPR", "SEVR", "STAT", "UDF")
"""The fields read, where a PV's record has them."""
BLOCK_RATE = 20.0
"""The demo's default block rate (the ring's depth follows it)."""


def listed() -> dict[str, tuple[str, str, list[str]]]:
    """PV -> (description, units, its fields of :data:`FIELDS`), from the listing ``mupnc
    pvs`` prints (and the record types of the PV groups it is made from)."""
    servers = {
        IOC: ioc_channels(PREFIX, SourceConfig(), BLOCK_RATE, GROUPS),
        MONITOR: monitor_channels(PREFIX, load_rules()),
    }
    channels = {name: channel for pvdb in servers.values() for name, channel in pvdb.items()}
    expected = {}
    for line in pv_lines(servers):
        members = expand(line.name)
        for pv in {members[0], members[-1]}:
            number = re.search(r"(\d+)\D*$", pv)
            desc = line.description
            if len(members) > 1 and number:
                desc = re.sub(r"\bN\b", str(int(number.group(1))), desc)
            fields = [f for f in FIELDS if f in channels[pv].field_inst.pvdb]
            expected[pv] = (desc, line.units, fields)
    return expected


def test_every_listed_pv_has_truthful_record_fields(tmp_path) -> None:
    expected = listed()
    base = free_pair(2)
    env = {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{base} 127.0.0.1:{base + 1}",
    }
    own = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    command = [sys.executable, "-m", "mupnc", "--db", f"sqlite:///{tmp_path / 'd.db'}", "demo"]
    log = tmp_path / "demo.log"
    with open(log, "w") as err:
        demo = subprocess.Popen(
            [*command, "--no-dashboard", "--no-pva", "--ca-port", str(base)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=own,
        )
    try:

        def analysing() -> bool:
            assert demo.poll() is None, log.read_text()
            values = caget_elsewhere(env, [f"{PREFIX}MON:PATTERNS", f"{PREFIX}MON:RUN"])
            return bool(values[f"{PREFIX}MON:PATTERNS"]) and bool(values[f"{PREFIX}MON:RUN"])

        wait_for(analysing, 90, lambda: f"the demo's monitor; its log:\n{log.read_text()}")
        names = [f"{pv}.{field}" for pv, (_, _, fields) in expected.items() for field in fields]
        read = caget_elsewhere(env, names, timeout=20)
        ctrl = caget_elsewhere(env, list(expected), timeout=20, ctrl=True)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=120)

    wrong = []
    for pv, (desc, units, fields) in expected.items():
        got = {field: read.get(f"{pv}.{field}") for field in FIELDS}
        limits = ctrl[pv]
        checks = {
            "RTYP": got["RTYP"] is not None,
            "DESC": got["DESC"] == desc,
            "SEVR": got["SEVR"] in (0, 1, 2, 3),
            "UDF": got["UDF"] in (0, 1) and (got["UDF"] == 0 or got["SEVR"] == 3),
            "STAT": got["STAT"] in range(22) and (got["STAT"] != 17 or got["SEVR"] == 3),
            "fields": {"RTYP", "DESC", "SEVR", "STAT", "UDF"} <= set(fields),
        }
        if got["EGU"] is not None:
            checks["EGU"] = got["EGU"] == units
        if got["HOPR"] is not None:
            checks["HOPR"] = got["HOPR"] == limits.get("upper_disp_limit", 0)
            checks["LOPR"] = got["LOPR"] == limits.get("lower_disp_limit", 0)
        if got["RTYP"] in ("ai", "longin"):
            checks["CTRL"] = (limits.get("lower_ctrl_limit"), limits.get("upper_ctrl_limit")) == (
                limits.get("lower_disp_limit"),
                limits.get("upper_disp_limit"),
            )
        if got["PREC"] is not None and "precision" in limits:
            checks["PREC"] = got["PREC"] == limits["precision"]
        wrong += [f"{pv}.{field}: {got.get(field)!r}" for field, ok in checks.items() if not ok]
    assert wrong == [], "\n".join(wrong)
    assert len(expected) > 100
