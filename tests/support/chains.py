"""Starting the chain's processes from the tests, on the suite's private Channel Access ports
(``ca_env`` of tests/conftest.py), and reading what the IOC counted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import epics
import numpy as np

from mupnc.orchestrate import Chain
from support.waiting import wait_for

NOT_ANALYSIS = {"run", "start", "end", "end_reason", "source", "replay_of", "alarms", "reanalysis"}


def analysis(summary: dict) -> dict:
    """What a replay or reanalysis of a run must give again: its report without the run's
    identity, times and alarms."""
    return {k: v for k, v in summary.items() if k not in NOT_ANALYSIS}


@contextmanager
def chain_of(
    db: str,
    ca_env: dict,
    ioc: list[str],
    monitor: list[str] | None = None,
    monitor_env: dict | None = None,
) -> Iterator[Chain]:
    """A :class:`Chain` on ``db`` running ``mupnc IOC`` (on the IOC port) and then, if given,
    ``mupnc MONITOR`` (on the monitor port, ``monitor_env`` added); shut down on leaving."""
    chain = Chain(db=db)
    try:
        chain.start("ioc", ioc, ca_env["ioc"])
        if monitor is not None:
            chain.start("monitor", monitor, {**ca_env["monitor"], **(monitor_env or {})})
        yield chain
    finally:
        chain.shutdown()


@contextmanager
def ioc_process(
    prefix: str, env: dict, log: Path, db: str, *args: str
) -> Iterator[subprocess.Popen]:
    """``mupnc --db DB ioc --run 1 --prefix PREFIX ARGS``, with ``env`` added to this process's
    environment and its output in ``log``: yielded once it serves the run (``RUN:STATE`` 1,
    within 30 s), terminated on leaving."""
    command = [sys.executable, "-m", "mupnc", "--db", db, "ioc", "--run", "1", "--prefix", prefix]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, *args], env={**os.environ, **env}, stdout=out, stderr=out
        )
    try:

        def serving() -> bool:
            if epics.caget(prefix + "RUN:STATE", timeout=1) == 1:
                return True
            assert process.poll() is None, log.read_text()
            return False

        wait_for(serving, 30, lambda: f"the IOC to serve its run; its log:\n{log.read_text()}")
        yield process
    finally:
        process.terminate()
        process.wait(15)


def ioc_scalers(prefix: str, timeout: float = 5.0) -> np.ndarray:
    """The IOC's helicity-gated scalers, ``DAQ:SCALER:PLUS`` and ``:MINUS``, shape (2, channels)."""
    return np.array(
        [epics.caget(f"{prefix}DAQ:SCALER:{s}", timeout=timeout) for s in ("PLUS", "MINUS")]
    )
