"""``mupnc pvs`` and ``mupnc ioc --list-pvs``: every PV of the IOC and the monitor, the
ring of read-back blocks on one line, counted against the PV databases the servers are
built from (no Channel Access: the listing needs no server)."""

from __future__ import annotations

import re
from pathlib import Path

from support.cli import in_process

from mupnc.ioc.server import GROUPS, build_ioc
from mupnc.monitor.alarms.pvs import alarm_pv_group
from mupnc.monitor.alarms.rules import load_rules
from mupnc.monitor.feedback.pvs import feedback_pv_group
from mupnc.monitor.feedback.service import FeedbackRequests
from mupnc.monitor.publisher import ResultGroup, beam_group
from mupnc.pv_list import fold
from mupnc.sim.source import SourceConfig

COUNT = re.compile(r" \((\d+) PVs\)$")


def listed(out: str) -> dict[str, list[str]]:
    """PV (or folded family) -> the other columns of a listing."""
    rows = [line.split("\t") for line in out.splitlines()]
    return {row[0]: row[1:] for row in rows[1:]}


def count(meaning: str) -> int:
    found = COUNT.search(meaning)
    return int(found.group(1)) if found else 1


def test_pvs_lists_the_ioc_and_the_monitor_with_the_ring_on_one_line(capsys) -> None:
    code, out, err = in_process(capsys, "pvs", "--prefix", "L:")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split("\t") == ["PV", "server", "type", "units", "meaning"]
    pvs = listed(out)
    assert pvs["L:RUN:NUMBER"][:2] == ["ioc", "LONG"]
    assert pvs["L:BEAM:HC:CHARGE_SP"][:3] == ["ioc", "DOUBLE (writable)", "ppm"]
    assert pvs["L:MON:ASYM"] == [
        "monitor",
        "DOUBLE",
        "",
        "Running combined physics asymmetry (fraction)",
    ]
    assert pvs["L:MON:FB:CHARGE:MODE"][:2] == ["monitor", "ENUM (writable)"]
    # every monitor PV is served over pvAccess too; the per-minirun table only there
    assert pvs["L:MON:MINIRUNS"][:2] == ["monitor (pva)", "NTTable"]
    rules = load_rules()
    for name in [rule.name for rule in rules.rules] + ["summary", "count", "unacked", "top"]:
        assert pvs[f"L:MON:ALARM:{name.upper()}"][0] == "monitor", name

    ioc = build_ioc("L:", SourceConfig(), 0, 20.0, GROUPS).pvdb
    depth = ioc["L:DAQ:RING_DEPTH"].value
    rings = [name for name in pvs if name.startswith("L:DAQ:RING:")]
    assert rings == [f"L:DAQ:RING:{{000..{depth - 1:03d}}}"]
    ring = pvs[rings[0]]
    assert ring[:2] == ["ioc", "LONG"]
    assert ring[3] == f"Ring buffer slot N: block number = slot mod depth ({depth} PVs)"

    monitor: dict = {}
    for group in (
        ResultGroup(prefix="L:MON:"),
        beam_group("L:"),
        feedback_pv_group("L:", FeedbackRequests()),
        alarm_pv_group("L:", [rule.name for rule in rules.rules]),
    ):
        monitor.update(group.pvdb)
    for server, pvdb in (("ioc", ioc), ("monitor", monitor)):
        counted = sum(count(row[3]) for row in pvs.values() if row[0] == server)
        assert counted == len(pvdb), server
        plain = {name for name, row in pvs.items() if row[0] == server and "{" not in name}
        assert plain <= set(pvdb), plain - set(pvdb)
    assert len(pvs) < 200  # not one line per ring slot


def test_ioc_list_pvs_folds_the_ring_too(capsys) -> None:
    code, out, _ = in_process(capsys, "ioc", "--list-pvs", "--prefix", "L:", "--block-rate", "10")
    assert code == 0
    pvs = listed(out)
    assert all(len(row) == 3 for row in pvs.values())
    assert [name for name in pvs if "RING:" in name] == ["L:DAQ:RING:{000..199}"]
    assert pvs["L:DAQ:RING:{000..199}"][2].endswith("(200 PVs)")
    assert not any(name.startswith("L:MON:") for name in pvs)  # the IOC's own PVs only


def test_fold_takes_only_runs_of_consecutive_numbers_of_one_width() -> None:
    names = ["A:1", "R:00", "R:01", "B", "R:02", "S:1", "S:2", "T:01", "T:02", "T:04", "U:1"]
    names += ["U:02", "U:03", "V:7:X", "V:8:X", "V:9:X"]
    assert fold(names) == [
        ("A:1", ["A:1"]),
        ("R:{00..02}", ["R:00", "R:01", "R:02"]),
        ("B", ["B"]),
        ("S:1", ["S:1"]),  # two are not a family worth folding
        ("S:2", ["S:2"]),
        ("T:01", ["T:01"]),  # a gap
        ("T:02", ["T:02"]),
        ("T:04", ["T:04"]),
        ("U:1", ["U:1"]),  # another width
        ("U:02", ["U:02"]),
        ("U:03", ["U:03"]),
        ("V:{7..9}:X", ["V:7:X", "V:8:X", "V:9:X"]),
    ]


def test_the_references_pv_table_is_the_generated_listing(capsys) -> None:
    """docs/reference.md's "Process variables" table is ``mupnc pvs --prefix '' --markdown``."""
    code, out, _ = in_process(capsys, "pvs", "--prefix", "", "--markdown")
    assert code == 0
    reference = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    begin, end = reference.index("<!-- pvs:begin"), reference.index("<!-- pvs:end -->")
    table = reference[reference.index("\n", begin) + 1 : end]
    assert table == out, "docs/reference.md's PV table is stale: run python -m mupnc.docs_text"
    assert "`MON:HEL_ERRORS`" in table
