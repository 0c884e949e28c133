"""CI smoke version of the soak (``bench/bench_soak.py``): 90 s of the whole chain at MOLLER
scale (1.92 kHz x 512 channels, PostgreSQL, dashboard open in Chromium) with every kind of
chaos: the IOC restarted, the monitor killed, PostgreSQL stopped, the monitor's CA sockets
closed.  Every window must be counted exactly once (database totals = IOC scalers), and
only the IOC's down time may be missing, reported as lost and alarmed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ca, pytest.mark.browser, pytest.mark.postgres]

BENCH = Path(__file__).parents[1] / "bench" / "bench_soak.py"


def test_soak_with_chaos_counts_every_window_once() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--duration", "90", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    failed = [name for name, ok in figures["checks"].items() if not ok]
    assert not failed, f"{failed}\n{result.stdout[-3000:]}"
    assert result.returncode == 0
    assert figures["state"] == "ended"
    assert figures["max_abs_count_difference"] == 0
    # the IOC was down 5 s: at 1920 windows/s that is about 9600 windows, in one gap
    assert len(figures["gaps"]) == 1 and figures["gaps"][0] >= 5 * 1920
    assert "missed_windows" in figures["alarms_raised"]
    for event in ("IOC started again", "monitor started again", "PostgreSQL started again"):
        assert any(event in line for line in figures["events"]), event
    assert any("CA socket(s) of the monitor" in line for line in figures["events"])
