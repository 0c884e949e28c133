"""Over real Channel Access: runs always end, one monitor per run, a quiet and fast start.

``mupnc demo`` is stopped by SIGINT, SIGHUP or SIGTERM at 20 moments spread over its
start-up and running (twice by a second signal at once): it exits within seconds, leaves
no child process behind, and its run is ``ended`` or ``aborted`` with the reason.  A
second monitor on a monitored run is refused in one line naming the first's host and pid;
a stopped monitor leaves the run ``aborted`` and the next one resumes it; an IOC closed by
SIGHUP ends its run; a monitor waiting for an IOC that never comes stops at Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import epics
import pytest
from sqlalchemy import select
from support.chains import chain_of, ioc_process
from support.cli import sqlite_with_schema
from support.waiting import wait_for

from mupnc.db.models import ResultSnapshot, Run
from mupnc.db.session import make_engine, transaction
from mupnc.epics_env import free_port
from mupnc.monitor.ingest import optional_values
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

STOP_BOUND = 30.0
"""Seconds a stopped command may take to exit (it takes 0.2-2 s on a quiet machine: the
bound only tells a stop from a hang, which took 50 s and more before)."""

MOMENTS = [0.05 + 0.35 * k for k in range(20)]
"""Seconds after the start of ``mupnc demo`` at which it is stopped: 0.05-6.7 s, start-up
(about 2.5 s here) and running."""
INTERPRETER_START_FAILED = "Fatal Python error: init_import_site"
"""What CPython prints when a SIGINT lands while it imports ``site`` (a loaded machine can
stretch that past the first moment): nothing of mupnc ran, so no run and no child exist."""
STARTUP_INTERRUPT = re.compile(
    r'Traceback \(most recent call last\):\n(  File "<frozen [^>]+>", line \d+, in \S+\n)+'
    r"KeyboardInterrupt\n"
)
"""Python's own report of a SIGINT that lands while ``runpy`` imports the ``mupnc``
package, before the first line of mupnc can catch it (every frame is Python's frozen
import machinery): nothing of mupnc ran, so no run and no child exist."""
SIGNALS = [signal.SIGINT, signal.SIGHUP, signal.SIGINT, signal.SIGTERM]
TWICE = {5, 14}
"""Moments at which a second SIGINT follows at once (it must stop everything at once)."""


def runs(db: str) -> list[Run]:
    engine = make_engine(db)
    with transaction(engine) as session:
        rows = list(session.scalars(select(Run).order_by(Run.number)))
        session.expunge_all()
    engine.dispose()
    return rows


def children_of(pid: int) -> list[int]:
    """Processes started by ``mupnc`` process ``pid`` (they carry MUPNC_PARENT_PID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MUPNC_PARENT_PID={pid}".encode() in environ:
            found.append(int(entry.name))
    return found


def own_ca_environment() -> dict:
    """This environment without the suite's EPICS variables: a demo sets up its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}


@pytest.mark.parametrize("moment", range(len(MOMENTS)))
def test_a_stopped_demo_always_ends_its_run_and_leaves_nothing_behind(tmp_path, moment):
    db = sqlite_with_schema(tmp_path / "stop.db")
    sig = SIGNALS[moment % len(SIGNALS)]
    command = [sys.executable, "-m", "mupnc", "--db", db, "demo", "--duration", "60"]
    command += ["--port", str(free_port())] if moment % 5 == 0 else ["--no-dashboard"]
    demo = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=own_ca_environment()
    )
    time.sleep(MOMENTS[moment])  # the moment is the test's input, not a wait for a condition
    demo.send_signal(sig)
    if moment in TWICE:
        time.sleep(0.3)
        demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=STOP_BOUND)
    said = f"{sig.name} at {MOMENTS[moment]:.2f} s: exit {demo.returncode}\n{out}\n{err}"
    if INTERPRETER_START_FAILED in err:  # SIGINT in Python's own start, before any mupnc code
        assert demo.returncode == 1 and runs(db) == [] and children_of(demo.pid) == [], said
        return
    if STARTUP_INTERRUPT.fullmatch(err):  # SIGINT in runpy's import, before any mupnc line
        assert demo.returncode == -signal.SIGINT and runs(db) == [], said
        assert children_of(demo.pid) == [], said
        return
    assert demo.returncode in (0, 130, -sig), said  # -sig: stopped while Python was loading
    assert children_of(demo.pid) == [], said
    for run in runs(db):  # none if the signal came before the run was allocated
        assert run.state in ("ended", "aborted"), said
        assert run.end_reason and run.end is not None, said
        assert run.monitor_token is None, said
        assert f"run {run.number} {run.state}" in out + err, said
    assert "Traceback" not in err, said


def test_a_second_monitor_is_refused_and_a_stopped_one_is_resumed(tmp_path, ca_env, ioc_prefix):
    db = f"sqlite:///{tmp_path / 'lease.db'}"
    run = new_run(db, SourceConfig(seed=11))
    ioc = ["ioc", "--run", str(run), "--seed", "11", "--prefix", ioc_prefix, "--block-rate", "5"]
    monitor = ["monitor", "--prefix", ioc_prefix]
    with chain_of(db, ca_env, ioc, monitor) as chain:
        first = chain.processes["monitor"].pid
        wait_for(lambda: runs(db)[0].state == "running", 60, "the monitor to take the run")
        own_port = str(free_port())  # as on another host: the same port would be refused
        second = subprocess.run(
            [sys.executable, "-m", "mupnc", "--db", db, *monitor],
            env={**os.environ, **ca_env["monitor"], "EPICS_CA_SERVER_PORT": own_port},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first} on {socket.gethostname()}" in lines[0]

        chain.signal("monitor", signal.SIGTERM)  # stopped: the run is aborted, resumable
        assert chain.wait("monitor", STOP_BOUND) == 0
        stopped = runs(db)[0]
        assert stopped.state == "aborted" and "monitor stopped (SIGTERM)" in stopped.end_reason
        assert stopped.monitor_token is None
        chain.start("monitor", monitor, ca_env["monitor"])
        wait_for(lambda: runs(db)[0].state == "running", 60, "the next monitor to resume it")
        wait_for(lambda: runs(db)[0].windows > stopped.windows, 60, "windows after the resume")
        assert chain.end_run(), "the resumed monitor did not finish the run"
    ended = runs(db)[0]
    assert (ended.state, ended.end_reason) == ("ended", "the IOC ended the run")
    engine = make_engine(db)
    with transaction(engine) as session:
        lock = session.execute(
            select(ResultSnapshot.decoder).order_by(ResultSnapshot.id.desc()).limit(1)
        ).scalar_one()
    assert lock == "LOCKED"


def monitor_waiting_for_the_next_run(
    db: str, ca_env: dict, monitor: list[str], log: Path
) -> subprocess.Popen:
    """``mupnc MONITOR`` started after its run ended and was recorded, its stderr in
    ``log``: returned once it says it waits for the IOC's next run."""
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mupnc", "--db", db, *monitor],
            env={**os.environ, **ca_env["monitor"]},
            stderr=out,
        )
    wait_for(lambda: "waiting for the IOC's next run" in log.read_text(), 60, "the wait")
    return process


def test_a_monitor_started_after_the_run_ended_and_was_recorded_leaves_it_alone(
    tmp_path, ca_env, ioc_prefix
):
    """A monitor restarted by its service (``Restart=always``) while the IOC still serves
    the run its predecessor recorded to the end: it waits for the IOC's next run and says
    so, and the ended run keeps its end time and reason (it took it over and rewrote them)."""
    db = f"sqlite:///{tmp_path / 'ended.db'}"
    run = new_run(db, SourceConfig(seed=13))
    ioc = ["ioc", "--run", str(run), "--seed", "13", "--prefix", ioc_prefix, "--block-rate", "5"]
    monitor = ["-v", "monitor", "--prefix", ioc_prefix]
    log = tmp_path / "restarted.log"
    with chain_of(db, ca_env, ioc, monitor) as chain:
        wait_for(lambda: runs(db)[0].windows > 0, 60, "windows in the database")
        assert chain.end_run(), "the monitor did not finish the run"
        ended = runs(db)[0]
        assert ended.state == "ended"
        restarted = monitor_waiting_for_the_next_run(db, ca_env, monitor, log)
        restarted.send_signal(signal.SIGINT)
        assert restarted.wait(STOP_BOUND) == 0, log.read_text()
    after = runs(db)[0]
    assert (after.state, after.end, after.end_reason) == ("ended", ended.end, ended.end_reason)
    assert f"run {run} ended and is recorded" in log.read_text()
    assert "resumed from the checkpoint" not in log.read_text()


def test_a_monitor_waiting_past_a_recorded_run_takes_the_restarted_iocs_next_run_whole(
    tmp_path, ca_env, ioc_prefix
):
    """docs/deploy.md's next run: the run ended and recorded, a monitor started meanwhile
    waits; the IOC is restarted into the next run, which the waiting monitor takes from its
    first window.  Before, the old IOC's last block, received while waiting, was taken for
    the new run's: every window was then lost or dropped as delivered already (or a get
    during the restart failed and the monitor exited)."""
    db = f"sqlite:///{tmp_path / 'next.db'}"
    first = new_run(db, SourceConfig(seed=13))
    ioc = ["ioc", "--seed", "13", "--prefix", ioc_prefix, "--block-rate", "5"]
    monitor = ["-v", "monitor", "--prefix", ioc_prefix]
    log = tmp_path / "waiting.log"
    with chain_of(db, ca_env, [*ioc, "--run", str(first)], monitor) as chain:
        wait_for(lambda: runs(db)[0].windows > 0, 60, "windows in the database")
        assert chain.end_run(), "the monitor did not finish the run"
        waiting = monitor_waiting_for_the_next_run(db, ca_env, monitor, log)
        chain.signal("ioc", signal.SIGTERM)
        assert chain.wait("ioc", STOP_BOUND) == 0, "the IOC did not stop at SIGTERM"
        second = new_run(db, SourceConfig(seed=14))
        chain.start("ioc", [*ioc, "--run", str(second)], ca_env["ioc"])
        wait_for(lambda: runs(db)[1].windows >= 120, 90, "windows of the next run")
        chain.signal("ioc", signal.SIGINT)  # end the next run: the monitor drains it
        assert waiting.wait(60) == 0, log.read_text()
    taken = runs(db)[1]
    assert (taken.number, taken.state) == (second, "ended"), log.read_text()
    assert taken.lost_windows == 0, log.read_text()
    assert " ERROR: " not in log.read_text() and "delivered already" not in log.read_text()
    assert f"run {second} ended (the IOC ended the run): {taken.windows} windows, 0 lost" in (
        log.read_text()
    )


def test_an_ioc_closed_by_sighup_ends_its_run(tmp_path, ca_env, ioc_prefix):
    db = f"sqlite:///{tmp_path / 'hup.db'}"
    run = new_run(db, SourceConfig(seed=12))
    ioc = ["ioc", "--run", str(run), "--seed", "12", "--prefix", ioc_prefix, "--block-rate", "5"]
    with chain_of(db, ca_env, ioc, ["monitor", "--prefix", ioc_prefix]) as chain:
        wait_for(lambda: runs(db)[0].windows > 0, 60, "windows in the database")
        chain.signal("ioc", signal.SIGHUP)
        assert chain.wait("ioc", STOP_BOUND) == 0, "the IOC did not stop at SIGHUP"
        assert chain.wait("monitor", STOP_BOUND) == 0, "the monitor did not finish the run"
    ended = runs(db)[0]
    assert (ended.state, ended.end_reason) == ("ended", "the IOC ended the run")


def test_a_monitor_waiting_for_an_absent_ioc_stops_at_ctrl_c(tmp_path, ca_env, ioc_prefix):
    db = f"sqlite:///{tmp_path / 'absent.db'}"
    new_run(db, SourceConfig())
    log = tmp_path / "monitor.log"
    with open(log, "w") as out:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "mupnc", "--db", db, "-v", "monitor", "--prefix", ioc_prefix],
            env={**os.environ, **ca_env["monitor"]},
            stderr=out,
        )
    wait_for(lambda: "waiting for the IOC" in log.read_text(), 60, "the monitor to wait")
    monitor.send_signal(signal.SIGINT)
    assert monitor.wait(STOP_BOUND) == 0, log.read_text()
    assert "stopped while waiting for the IOC (SIGINT)" in log.read_text()


def test_optional_pvs_are_looked_up_together_within_one_timeout(ca_env, ioc_prefix):
    """Seven PVs no IOC serves cost one timeout, not seven in a row (before: 5 s each)."""
    names = [f"{ioc_prefix}NOT:SERVED:{k}" for k in range(7)]
    started = time.monotonic()
    assert optional_values(names, timeout=1.0) == {}
    assert time.monotonic() - started < 3.5, "the lookups did not overlap (7 x 1 s in a row)"


def test_a_missing_ca_repeater_is_said_once(tmp_path, ca_env, ioc_prefix):
    """Beacons sent where no repeater listens: one line, no traceback, however long."""
    db = f"sqlite:///{tmp_path / 'beacon.db'}"
    new_run(db, SourceConfig())
    beacons = {
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_PORT": str(free_port()),  # nothing listens there
    }
    log = tmp_path / "ioc.log"
    with ioc_process(ioc_prefix, {**ca_env["ioc"], **beacons}, log, db):
        # Beacons go out at 0.02 s, then at doubling intervals: 7 in the first 2.5 s of data.
        wait_for(
            lambda: (epics.caget(ioc_prefix + "DAQ:SEQ", timeout=1) or 0) > 3 * 240,
            60,
            "three seconds of windows",
        )
    text = log.read_text()
    assert text.count("no CA repeater answers at 127.0.0.1:") == 1, text
    assert "Traceback" not in text and "Failed to send beacon" not in text, text
