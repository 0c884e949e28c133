"""A Channel Access client in a fresh process, as a user attaching to a running chain: its
environment is this process's without any ``EPICS_*`` variable (the suite's private set-up,
tests/conftest.py) plus the assignments given, so it reaches only what those name.

:func:`caget_elsewhere` runs this file: ``python ca_client.py PV...`` prints a JSON object
``{pv: value}`` (pyepics; an array as the list of its first element; null for a PV that
did not answer) after every PV had up to ``CA_CLIENT_TIMEOUT`` seconds to connect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TIMEOUT_ENV = "CA_CLIENT_TIMEOUT"
CTRL_ENV = "CA_CLIENT_CTRL"
"""Set: print each PV's DBR_CTRL metadata (``get_ctrlvars``) instead of its value."""


def caget_elsewhere(
    env: dict[str, str], names: list[str], timeout: float = 5.0, ctrl: bool = False
) -> dict:
    """``{pv: value or None}`` read by pyepics in a new process with only ``env`` for its
    EPICS settings (``ctrl``: ``{pv: DBR_CTRL metadata or None}``)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    done = subprocess.run(
        [sys.executable, __file__, *names],
        env={**own, **env, TIMEOUT_ENV: str(timeout), **({CTRL_ENV: "1"} if ctrl else {})},
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _main(names: list[str]) -> None:
    import epics

    timeout = float(os.environ[TIMEOUT_ENV])
    pvs = [epics.PV(name, auto_monitor=False) for name in names]
    for pv in pvs:
        pv.wait_for_connection(timeout=timeout)
    values = {}
    for pv in pvs:
        if not pv.connected:
            value = None
        elif os.environ.get(CTRL_ENV):
            ctrl = pv.get_ctrlvars(timeout=timeout) or {}
            value = {k: v for k, v in ctrl.items() if isinstance(v, int | float | str)}
        else:
            value = pv.get(timeout=timeout, count=1)
        values[pv.pvname] = value.tolist() if hasattr(value, "tolist") else value
    print(json.dumps(values, default=str), flush=True)
    os._exit(0)  # no libca finalisation at exit (it can wedge: docs of pyepics)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _main(sys.argv[1:])
