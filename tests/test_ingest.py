"""The monitor's Channel Access ingest against a real (caproto) IOC on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import epics
from support.waiting import wait_for

from mupnc.monitor.ingest import BlockIngest

UNPOSTED_IOC = Path(__file__).with_name("support") / "unposted_ioc.py"


def test_the_ingest_reads_what_the_ioc_serves_not_the_last_monitor_update(
    ca_env, ioc_prefix, tmp_path
) -> None:
    """After an IOC restart a channel reconnects before the new IOC's first monitor update
    arrives: a read of the cached update gave the old IOC's run, and a monitor took a
    restarted IOC's new run for the one it monitored (dropping every window of it as
    delivered already).  The ingest's reads ask the IOC."""
    log = tmp_path / "ioc.log"
    with open(log, "w") as out:
        ioc = subprocess.Popen(
            [sys.executable, str(UNPOSTED_IOC), ioc_prefix],
            env={**os.environ, **ca_env["ioc"]},
            stdout=out,
            stderr=out,
        )
    try:
        ingest = BlockIngest(ioc_prefix, connect_timeout=30)
        assert ingest.caget("RUN:NUMBER") == 1
        wait_for(  # a monitored channel of RUN:NUMBER holds its update (1) in this process
            lambda: epics.get_pv(ioc_prefix + "RUN:NUMBER").get(use_monitor=True) == 1,
            10,
            "the monitor update of RUN:NUMBER",
        )
        assert epics.caput(ioc_prefix + "TEST:SERVE_RUN_UNPOSTED", 2, wait=True, timeout=5)
        assert epics.caget(ioc_prefix + "RUN:NUMBER", use_monitor=True) == 1  # no update came
        assert ingest.caget("RUN:NUMBER") == 2
    finally:
        ioc.terminate()
        ioc.wait(15)
