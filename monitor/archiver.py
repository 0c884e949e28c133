"""Archiver of slow-control PVs: every monitor update, with EPICS severity and status.

Like the Archiver Appliance's MONITOR policy, but without a sampling period: the IOCs
already rate-limit their slow readbacks (at most every 0.5 s), so every update is kept.
pyepics callbacks only enqueue; :meth:`SlowControlArchiver.drain` runs in the monitor's
worker thread and hands rows to :class:`mupnc.monitor.recorder.RunRecorder`, which writes them
in the flush's transaction (``slow_control_samples``).
"""

from __future__ import annotations

import math
import queue
from datetime import UTC, datetime

import epics
from caproto import AlarmStatus

from mupnc.daq.severity import Severity

ARCHIVED = (
    "BEAM:RATE",
    "BEAM:RATE_SP",
    "BEAM:ON",
    "BEAM:TRIP",
    "BEAM:MOMENTUM",
    "BEAM:POLARIZATION",
    "HEL:ROTATOR:SP",
    "HEL:ROTATOR:RBV",
    "HEL:ROTATOR:STATE",
)
"""Slow-control PVs archived by default (without the prefix)."""


def _status_name(status: int) -> str:
    """EPICS alarm status name (STAT) of a status number; empty if unknown."""
    try:
        return AlarmStatus(status).name
    except ValueError:
        return ""


class SlowControlArchiver:
    """Subscribes to ``prefix + name`` for each of ``names``; enum PVs are archived as
    their state index (the value column is numeric)."""

    def __init__(self, prefix: str, names: tuple[str, ...] = ARCHIVED) -> None:
        self._queue: queue.SimpleQueue[dict] = queue.SimpleQueue()
        self._pvs = [
            epics.PV(prefix + name, callback=self._on_update, auto_monitor=True, form="time")
            for name in names
        ]

    def _on_update(self, pvname=None, value=None, timestamp=None, severity=0, status=0, **_):
        # Inside libca: record and return.
        try:
            number = float(value)
        except (TypeError, ValueError):
            return
        self._queue.put(
            dict(
                pv=pvname,
                time=datetime.fromtimestamp(timestamp or 0.0, UTC),
                value=number if math.isfinite(number) else None,
                severity=Severity(min(int(severity or 0), Severity.INVALID)).name,
                status=_status_name(int(status or 0)),
            )
        )

    def drain(self) -> list[dict]:
        """Samples received since the last call, oldest first."""
        rows = []
        while True:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                return rows

    def close(self) -> None:
        for pv in self._pvs:
            pv.clear_callbacks()
            pv.disconnect()
