"""Slow-control PVs the alarm rules watch (pyepics monitors; callbacks only enqueue).

:meth:`PvWatch.latest` drains the queue in the caller's thread and returns, per PV name
without prefix, the newest value (enum PVs as their state string), its EPICS severity and
whether the PV is connected.  A PV never connected reads as disconnected.
"""

from __future__ import annotations

import queue

import epics

from mupnc.daq.severity import Severity
from mupnc.monitor.alarms.rules import Observation


class PvWatch:
    def __init__(self, prefix: str, names: tuple[str, ...]) -> None:
        self.prefix = prefix
        self._queue: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._latest = {name: Observation(None, connected=False) for name in names}
        self._pvs = [
            epics.PV(
                prefix + name,
                callback=self._on_value,
                connection_callback=self._on_connection,
                auto_monitor=True,
                form="ctrl",  # enum updates carry their state strings
            )
            for name in names
        ]

    def _on_value(self, pvname=None, value=None, severity=0, **kw) -> None:
        # Inside libca: record and return.
        states = kw.get("enum_strs")
        if states and isinstance(value, int) and 0 <= value < len(states):
            value = states[value]
        self._queue.put(("value", pvname, value, severity))

    def _on_connection(self, pvname=None, conn=False, **_kw) -> None:
        self._queue.put(("connection", pvname, conn, None))

    def latest(self) -> dict[str, Observation]:
        while True:
            try:
                event, pvname, value, severity = self._queue.get_nowait()
            except queue.Empty:
                break
            name = pvname[len(self.prefix) :]
            old = self._latest[name]
            if event == "connection":
                self._latest[name] = Observation(old.value, old.error, old.severity, bool(value))
            else:
                sevr = Severity(min(max(int(severity or 0), 0), 3))
                self._latest[name] = Observation(value, severity=sevr, connected=True)
        return dict(self._latest)

    def close(self) -> None:
        for pv in self._pvs:
            pv.clear_callbacks()
            pv.disconnect()
