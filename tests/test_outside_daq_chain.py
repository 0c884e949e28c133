"""Over real Channel Access: ``mupnc monitor`` fed by a DAQ IOC on EPICS base that was written
from docs/daq-contract.md alone (``support/outside_ioc.py``, pythonSoftIOC, in a process
of its own on the suite's IOC port), as the chain test checks mupnc's own IOC: totals
equal to the DAQ's scalers, nothing lost, the injected asymmetry within 3 sigma — across
a monitor killed and started again mid-run.  And what the monitor says, in one line, to an
outside DAQ that breaks the contract or serves a run nobody registered."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import epics
import numpy as np
import pytest
from db_writes import sorted_totals
from support.chains import ioc_scalers
from support.cli import mupnc, one_error_line, sqlite_with_schema
from support.waiting import wait_for

from mupnc.commands import report
from mupnc.db.models import MonitorCheckpoint, Run
from mupnc.db.session import make_engine, transaction
from mupnc.orchestrate import Chain

pytestmark = [
    pytest.mark.ca,
    pytest.mark.skipif(importlib.util.find_spec("softioc") is None, reason="needs softioc"),
]

OUTSIDE_IOC = Path(__file__).with_name("support") / "outside_ioc.py"
INJECTED = 0.01


def test_the_suite_never_loads_an_ioc_database_into_its_own_process() -> None:
    """softioc, once imported, makes pyepics load epicscorelibs' libca next to a loaded IOC
    database, and this process's array monitors (``DAQ:BLOCK``) then never fire: the outside
    IOC runs only in its own process, and nothing here imports it."""
    assert "softioc" not in sys.modules


@contextmanager
def outside_ioc(
    chain: Chain, ca_env: dict, prefix: str, run: int, log: Path, *options: str
) -> Iterator[subprocess.Popen]:
    """The outside IOC as the chain's ``ioc`` (SIGINT ends its run, SIGTERM stops it), once
    it serves a RUNNING run (within 60 s)."""
    command = [sys.executable, str(OUTSIDE_IOC), "--prefix", prefix, "--run", str(run)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, *options],
            env={**os.environ, **ca_env["ioc"]},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    chain.processes["ioc"] = process

    def running() -> bool:
        assert process.poll() is None, log.read_text()
        return epics.caget(prefix + "RUN:STATE", as_string=True, timeout=1) == "RUNNING"

    wait_for(running, 60, lambda: f"the outside IOC to run; its log:\n{log.read_text()}")
    yield process


def checkpoint_after(engine, run: int, after: float) -> bool:
    with transaction(engine) as session:
        checkpoint = session.get(MonitorCheckpoint, run)
        return checkpoint is not None and checkpoint.time.timestamp() > after


def test_an_outside_daq_on_epics_base_feeds_the_monitor_across_a_restart(
    tmp_path, ca_env, ioc_prefix
):
    db = sqlite_with_schema(tmp_path / "outside.db")
    registered = mupnc("run", "new", db=db)
    assert registered.returncode == 0, registered.stderr
    run = int(registered.stdout)
    engine = make_engine(db)
    monitor = ["monitor", "--prefix", ioc_prefix]
    chain = Chain(db=db)
    try:
        options = ("--asymmetry", str(INJECTED), "--pattern", "QUARTET", "--delay", "2")
        with outside_ioc(chain, ca_env, ioc_prefix, run, tmp_path / "ioc.log", *options):
            chain.start("monitor", monitor, ca_env["monitor"])
            after = time.time() + 2
            wait_for(lambda: checkpoint_after(engine, run, after), 60, "the monitor's checkpoint")
            chain.processes["monitor"].kill()  # mid-run, no clean-up
            chain.processes["monitor"].wait()
            chain.start("monitor", monitor, ca_env["monitor"])
            after = time.time() + 2
            wait_for(lambda: checkpoint_after(engine, run, after), 60, "the restarted monitor")
            assert chain.failed() is None
            assert chain.end_run(), "the restarted monitor did not finish the run cleanly"
            scalers = ioc_scalers(ioc_prefix, timeout=10)
            published_seq = int(epics.caget(ioc_prefix + "DAQ:SEQ", timeout=10))
    finally:
        chain.shutdown()
    summary = report(db, run)
    totals = sorted_totals(engine, run, [c["name"] for c in summary["channels"]])
    with transaction(engine) as session:
        row = session.get(Run, run)
        served = (row.pattern, row.delay_patterns, row.config["polarization"])
    engine.dispose()

    assert summary["state"] == "ended"
    assert summary["windows"] == published_seq + 1 > 1000
    assert summary["lost_windows"] == 0
    assert all(v == 0 for v in summary["helicity_errors"].values()), summary["helicity_errors"]
    assert summary["alarms"] == [], summary["alarms"]
    np.testing.assert_array_equal(totals, scalers)
    a = summary["asymmetry"]
    assert abs(a["value"] - INJECTED) < 3 * a["error"], a
    assert served == ("quartet", 2, 0.9)  # what the DAQ served, not the registration's


@pytest.mark.parametrize(
    ("case", "options", "said"),
    [
        ("unknown pattern", ("--pattern", "SEXTET"), "HEL:PATTERN is 'SEXTET', not one of pair"),
        ("layout version 1", ("--layout-version", "1"), "window block of layout version 1"),
        ("unregistered run", (), "which is not in the database: register the run with"),
    ],
)
def test_the_monitor_refuses_a_daq_that_breaks_the_contract_in_one_line(
    tmp_path, ca_env, ioc_prefix, case, options, said
):
    db = sqlite_with_schema(tmp_path / "outside.db")
    run = 999 if case == "unregistered run" else int(mupnc("run", "new", db=db).stdout)
    chain = Chain(db=db)
    try:
        with outside_ioc(chain, ca_env, ioc_prefix, run, tmp_path / "ioc.log", *options):
            if case == "layout version 1":  # a block out, so the monitor sees it at start
                wait_for(
                    lambda: epics.caget(ioc_prefix + "DAQ:BLOCK_NUMBER", timeout=1) >= 0,
                    30,
                    "the first block",
                )
            env = {**os.environ, **ca_env["monitor"]}
            done = mupnc("monitor", "--prefix", ioc_prefix, db=db, env=env, timeout=120)
    finally:
        chain.shutdown()
    assert said in one_error_line(done, 1)
    engine = make_engine(db)
    with transaction(engine) as session:
        row = session.get(Run, run)
        assert row is None or row.state == "starting"  # nothing taken, nothing written
    engine.dispose()
